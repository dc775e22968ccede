import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';

// Our JSON Schema of Home Assistant's MQTT update entity (test/fixtures, written from HA's
// documentation), compiled once; dist/test/support → the source tree's test/fixtures.
const SCHEMA = JSON.parse(readFileSync(path.resolve(__dirname, '../../../test/fixtures/ha-mqtt-update.schema.json'), 'utf8')) as { $id: string };
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
ajv.addSchema(SCHEMA);

/** The discovery config's validator (`validConfig.errors` after a false). */
export const validConfig = ajv.getSchema(`${SCHEMA.$id}#/$defs/config`)!;
/** The JSON state's validator. */
export const validState = ajv.getSchema(`${SCHEMA.$id}#/$defs/state`)!;
