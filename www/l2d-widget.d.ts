// Types of l2d-widget.js: the <l2d-recommendations> element and the visitor's local history.
// <l2d-recommendations manifest="URL" k="8" mode="global|local|density" model="auto|always|never" debug heading="…">
import type { L2DClient, LoadProgress } from "./l2d-client.js";

/** Most history entries kept in localStorage. */
export const HISTORY_CAP: number;

/** The visitor's viewed items (localStorage only; never sent anywhere). */
export const history: {
  /** Adds a viewed item (moved to the end if already there). Fires "l2d-history-change". */
  record(itemId: string | number): void;
  /** Forgets everything. */
  clear(): void;
  /** The stored ids, oldest first. */
  get(): string[];
};

/** The page's one client per manifest, shared with every widget on it. */
export function sharedClient(
  manifestUrl: string,
  onProgress?: (p: LoadProgress) => void,
): { client: L2DClient; loaded: Promise<unknown>; listeners: Set<(p: LoadProgress) => void> };

/** One catalog entry of the first tier; `count` is its popularity (train-target count). */
export interface FirstTierItem {
  id: string;
  title: string;
  count: number;
}

/** The page's first tier per manifest (follows file + items parts, plain JavaScript, no model). */
export function sharedFollows(manifestUrl: string): Promise<{
  items: FirstTierItem[];
  recommend(ids: string[], k: number, excludeHistory?: boolean): { id: string; title: string }[];
}>;

/** Whether the visitor asked to save data (Save-Data or prefers-reduced-data). */
export function savesData(): boolean;
