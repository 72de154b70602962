/**
 * Messages between the page (`web/app.ts`) and its reader (`web/worker.ts`).
 *
 * @module
 */
import type { Explanation } from "../lib/models/sumnet/core.ts";

/** Page to reader. */
export type WorkerRequest =
  | {
    type: "init";
    /** Backends to try in order. */
    backends: string[];
    /** Absolute URL of the checkpoint's model.json. */
    modelUrl: string;
    /** Absolute URL of the folder of TensorFlow.js' wasm files (ending in `/`). */
    wasmUrl: string;
  }
  | { type: "read"; id: number; pixels: Uint8Array };

/** Reader to page. */
export type WorkerReply =
  | { type: "ready"; backend: string; tfjs: string }
  | { type: "reading"; id: number; explanation: Explanation; ms: number }
  | { type: "error"; id?: number; message: string };
