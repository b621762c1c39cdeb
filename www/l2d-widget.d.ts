// Types of l2d-widget.js: the <l2d-recommendations> element and the visitor's local history.
// <l2d-recommendations manifest="URL" k="8" mode="global|local|density" debug heading="…">
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
