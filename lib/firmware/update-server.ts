// The update server's public face: what nodes/, bench/, scripts/ and test/ import, under the
// names they always had. The transport lives in http/ (one idea per file), the domain's
// questions and answers in image-source.ts.
export { SERVING_LIMITS, servingLimits } from './connection-guard';
export type { ServingLimits } from './connection-guard';
export type { ImageRequest, ImageOffer, ImageAnswer, ImageSource, NoImageReason } from './image-source';
export { offer, noImage } from './image-source';
export type { UpdateEvent, UpdateEventType, UpdateServerOptions, AppInternals, SlotAnswer, RunningUpdateServer, WorkerInfo } from './http/update-types';
export { Revocation } from './http/revocation';
export { sliceBytes } from './http/slices';
export { normalizeDownloadPath } from './http/download-path';
export { withoutPaths } from './http/exchange';
export { STATUS_OF, statusOfNoImage } from './http/status-codes';
export type { RefusalReason } from './http/status-codes';
export { createUpdateApp } from './http/express-app';
export { createUpdateRequestListener } from './http/fast-path';
export { createUpdateHttpsServer } from './http/tls-listener';
export type { UpdateHttpsServer } from './http/tls-listener';
export { startUpdateServer } from './http/start-update-server';
