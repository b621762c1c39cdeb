// Types of l2d-client.js: the Promise-based client of the l2d Web Worker.
import type { BeamResult, RecommendOptions, RecommendResult } from "../pkg/l2d.js";

export type { BeamResult, RecommendOptions, RecommendResult, RecommendedItem } from "../pkg/l2d.js";

/** Bytes of one file arriving (or read from the Cache API). `total` is 0 when unknown. */
export interface LoadProgress {
  file: string;
  loaded: number;
  total: number;
  cached: boolean;
}

/** What `load` fetches: the manifest (file URLs resolve against it), the Cache API bucket, the blob. */
export interface ClientLoadOptions {
  manifestUrl: string;
  /** Cache API bucket; null or "" disables caching. Default "l2d-v1". */
  cacheName?: string | null;
  /** "memory" (every mode) or "global" (L2D-G only, smaller). Default "memory". */
  blob?: "memory" | "global";
}

/** A catalog item as `items()` lists it, with its number of memory states. */
export interface CatalogItem {
  id: string;
  title: string;
  count: number;
}

export class L2DClient {
  /** Starts the worker (default: l2d-worker.js next to this module). */
  constructor(workerUrl?: URL | string);
  /** Loads model and blob, verifying each file's sha256 against the manifest. */
  load(options: ClientLoadOptions, onProgress?: (p: LoadProgress) => void): Promise<unknown>;
  /** L2D recommendations for a history of item ids or exact titles, oldest first. */
  recommend(history: (string | number)[], options?: RecommendOptions): Promise<RecommendResult>;
  /** The beam-search baseline (constrained decoding of titles). */
  beam(history: (string | number)[], beam: number, k: number): Promise<BeamResult>;
  /** The catalog of the loaded blob. */
  items(): Promise<CatalogItem[]>;
  /** What was loaded (model, blob, scoring). */
  info(): Promise<Record<string, unknown>>;
  /** Whether the worker found a WebGPU adapter. */
  hasWebGPU(): Promise<boolean>;
  /** Stops the worker. */
  terminate(): void;
}
