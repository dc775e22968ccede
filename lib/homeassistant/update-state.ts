import { shownInput } from '../input-text';
import { HaMessage } from './message';
import { checkText } from './text';
import { HomeAssistantError, stateTopic } from './topics';

/**
 * The JSON state of one device's update entity, on our retained state topic. Keys and types as
 * HA's MQTT update page lists them for a JSON state (https://www.home-assistant.io/integrations/update.mqtt):
 * `installed_version`, `latest_version` (strings; we send null when we do not know), `title`,
 * `release_summary` (at most 255 characters), `release_url`, `in_progress` (boolean) and
 * `update_percentage` (a number from 0 to 100, or null to clear the progress).
 *
 * HA shows "update available" when `latest_version` differs from `installed_version`, so pass
 * the installed image again as `latest` when the update server has nothing newer for the device.
 */
export interface UpdateStateInput {
  /** What the device runs (its `espimage`). */
  installed: string;
  /** What the update server would offer it; null when not known. */
  latest: string | null;
  title?: string;
  releaseSummary?: string;
  releaseUrl?: string;
  /** Default: true while `percent` is a number. */
  inProgress?: boolean;
  /** Download progress, 0..100; null (the default) when none is running. */
  percent?: number | null;
}

export interface UpdateState {
  installed_version: string;
  latest_version: string | null;
  title?: string;
  release_summary?: string;
  release_url?: string;
  in_progress: boolean;
  update_percentage: number | null;
}

export const MAX_RELEASE_SUMMARY = 255;
const MAX_VERSION = 96;

export function updateEntityState(input: UpdateStateInput): UpdateState {
  if (typeof input !== 'object' || input === null) throw new HomeAssistantError(`invalid update state ${shownInput(input)}: expected {installed, latest, …}`);
  const percent = input.percent ?? null;
  if (percent !== null && (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100)) {
    throw new HomeAssistantError(`invalid update percentage ${shownInput(percent)}: expected a number from 0 to 100, or null`);
  }
  if (input.inProgress !== undefined && typeof input.inProgress !== 'boolean') throw new HomeAssistantError(`invalid in_progress ${shownInput(input.inProgress)}: expected true or false`);
  const inProgress = input.inProgress ?? percent !== null;
  if (!inProgress && percent !== null) throw new HomeAssistantError(`an update percentage (${percent}) needs in_progress true`);
  const state: UpdateState = {
    installed_version: checkText('installed version', input.installed, MAX_VERSION),
    latest_version: input.latest === null ? null : checkText('latest version', input.latest, MAX_VERSION),
    in_progress: inProgress,
    update_percentage: percent,
  };
  if (input.title !== undefined) state.title = checkText('title', input.title, 128);
  if (input.releaseSummary !== undefined) state.release_summary = checkText('release summary', input.releaseSummary, MAX_RELEASE_SUMMARY);
  if (input.releaseUrl !== undefined) {
    const url = checkText('release URL', input.releaseUrl, 256);
    if (!/^https?:\/\/[^\s/]+/.test(url)) throw new HomeAssistantError(`invalid release URL ${shownInput(url)}: expected an http:// or https:// URL`);
    state.release_url = url;
  }
  return state;
}

/** The state as the retained message for the device's state topic. */
export function updateStateMessage(id: string, input: UpdateStateInput): HaMessage {
  return { topic: stateTopic(id), payload: JSON.stringify(updateEntityState(input)), retain: true, qos: 1 };
}
