/// <reference lib="webworker" />
/**
 * The page's reader, in a Web Worker so that drawing stays smooth while SumNet reads: starts a
 * TensorFlow.js backend, loads the checkpoint with the library's custom layers
 * (`lib/models/sumnet/core.ts`) and answers each 40 x 168 image with `explainImage`'s reading. Bundled
 * by `web/build.ts` into `worker.js`.
 *
 * Messages in: {@linkcode WorkerRequest}; out: {@linkcode WorkerReply}.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { IMAGE_SIZE } from "../lib/constants.ts";
import { explainImage, registerLayers } from "../lib/models/sumnet/core.ts";
import type { WorkerReply, WorkerRequest } from "./protocol.ts";

let model: tf.LayersModel | undefined;

/** Starts the first backend of `names` that loads and returns its name. */
async function startBackend(names: string[], wasmUrl: string): Promise<string> {
  setWasmPaths(wasmUrl);
  const failures: string[] = [];
  for (const name of names) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
      failures.push(`${name}: did not start`);
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  throw new Error(`no TensorFlow.js backend loaded (${failures.join("; ")})`);
}

/** Answers one request. */
async function handle(request: WorkerRequest): Promise<WorkerReply> {
  if (request.type === "init") {
    const backend = await startBackend(request.backends, request.wasmUrl);
    registerLayers();
    model = await tf.loadLayersModel(request.modelUrl);
    await explainImage(model, new Uint8Array(IMAGE_SIZE)); // warm-up: kernels, shaders
    return { type: "ready", backend, tfjs: tf.version.tfjs };
  }
  if (!model) throw new Error("the reader was asked to read before it was started");
  const started = performance.now();
  const explanation = await explainImage(model, request.pixels);
  return { type: "reading", id: request.id, explanation, ms: performance.now() - started };
}

self.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  let reply: WorkerReply;
  try {
    reply = await handle(request);
  } catch (error) {
    reply = {
      type: "error",
      id: request.type === "read" ? request.id : undefined,
      message: (error as Error).message,
    };
  }
  self.postMessage(reply);
};
