/**
 * The multi-threaded (pthreads + SIMD) build of the tfjs wasm backend under Deno.
 *
 * tfjs 4.22 never loads it in Node-like runtimes (`WASM_HAS_MULTITHREAD_SUPPORT` is forced false
 * when `IS_NODE`, tensorflow/tfjs#3830), and its own loader would hand `node:worker_threads` a
 * `blob:` URL, which Deno rejects. This module loads the threaded Emscripten glue itself: the
 * pthread worker script is written to a temporary `.cjs` file (with a prelude that makes the
 * worker globals it assigns writable under Deno), the glue is instantiated with that file as its
 * worker, and `tf.registerBackend("wasm", ...)` is pointed at a `BackendWasm` over the module.
 * XNNPACK sizes its pool from `os.cpus().length / 2`, so that is stretched while the module
 * initialises to let it have the requested number of threads. The workers are unref'd once the
 * pool exists, so they do not keep the process alive.
 *
 * @module
 */

import { createRequire } from "node:module";
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import * as tfwasm from "@tensorflow/tfjs-backend-wasm";

/** Priority tfjs gives the wasm backend (kept the same). */
const WASM_PRIORITY = 2;

/** Globals the pthread worker script assigns that are read-only getters in a Deno worker. */
const WORKER_GLOBALS = [
  "self",
  "location",
  "postMessage",
  "performance",
  "Worker",
  "importScripts",
  "onmessage",
  "onunhandledrejection",
];

/** What the Emscripten module exposes that this file uses. */
interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  PThread?: {
    terminateAllThreads(): void;
    unusedWorkers: Array<{ unref?: () => void }>;
    runningWorkers: Array<{ unref?: () => void }>;
  };
  tfjs?: Record<string, unknown>;
}

let loaded: { threads: number; module: EmscriptenModule } | null = null;

/** Directory of the installed `@tensorflow/tfjs-backend-wasm/wasm-out/`. */
function wasmOutDir(): string {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve("@tensorflow/tfjs-backend-wasm");
  } catch (error) {
    throw new Error(
      `Cannot find @tensorflow/tfjs-backend-wasm in node_modules (run deno install): ${error}`,
    );
  }
  return main.replace(/[\\/]dist[\\/][^\\/]*$/, "/wasm-out/");
}

/**
 * Registers the `wasm` backend as the threaded build with `threads` threads (the calling thread
 * counts as one). Call before the wasm backend is first initialised; the engine then creates it
 * on `tf.setBackend("wasm")`. Rejects if the threaded build cannot start here.
 *
 * @returns the number of threads XNNPACK will use
 */
export async function registerThreadedWasmBackend(threads: number): Promise<number> {
  if (!Number.isInteger(threads) || threads < 2) {
    throw new Error(`registerThreadedWasmBackend: threads must be an integer >= 2, got ${threads}`);
  }
  if (loaded != null) {
    if (loaded.threads !== threads) {
      throw new Error(
        `The threaded wasm backend is already loaded with ${loaded.threads} threads; ` +
          `cannot change to ${threads} in the same process`,
      );
    }
    return threads;
  }
  if (typeof SharedArrayBuffer === "undefined") {
    throw new Error("Threaded wasm needs SharedArrayBuffer, which this runtime lacks");
  }
  const dir = wasmOutDir();
  const require = createRequire(import.meta.url);
  const factory = require(dir + "tfjs-backend-wasm-threaded-simd.js") as (
    config: Record<string, unknown>,
  ) => Promise<EmscriptenModule>;
  const { wasmWorkerContents } = require(dir + "tfjs-backend-wasm-threaded-simd.worker.js") as {
    wasmWorkerContents: string;
  };
  const tempDir = await Deno.makeTempDir({ prefix: "digitsum-wasm-" });
  const workerPath = `${tempDir}/tfjs-backend-wasm-threaded-simd.worker.cjs`;
  const prelude = `for (const k of ${JSON.stringify(WORKER_GLOBALS)}) {` +
    " Object.defineProperty(globalThis, k, { value: globalThis[k], writable: true," +
    " configurable: true, enumerable: true }); }\n";
  // The worker source is a template literal whose "\n" escapes became real newlines.
  await Deno.writeTextFile(workerPath, prelude + wasmWorkerContents.replace(/\n/g, "\\n"));

  const realCpus = os.cpus;
  const stretched = () => {
    const cpus = realCpus();
    return Array.from({ length: 2 * threads }, (_, i) => cpus[i % cpus.length]);
  };
  let module: EmscriptenModule;
  try {
    (os as { cpus: () => os.CpuInfo[] }).cpus = stretched;
    module = await factory({
      locateFile(path: string, prefix: string) {
        if (path.endsWith(".worker.js")) return workerPath;
        if (path.endsWith(".wasm")) return dir + "tfjs-backend-wasm-threaded-simd.wasm";
        return prefix + path;
      },
    });
  } catch (error) {
    throw new Error(`Cannot start the threaded wasm build: ${error}`);
  } finally {
    (os as { cpus: () => os.CpuInfo[] }).cpus = realCpus;
    // Every pooled worker has loaded the script by now (the module waits for them).
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  }
  module.tfjs = {
    init: module.cwrap("init", null, []),
    initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
    getThreadsCount: module.cwrap("get_threads_count", "number", []),
    registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
    disposeData: module.cwrap("dispose_data", null, ["number"]),
    dispose: module.cwrap("dispose", null, []),
  };
  loaded = { threads, module };
  tfwasm.setThreadsCount(threads);
  tf.removeBackend("wasm");
  tf.registerBackend("wasm", () => {
    try {
      (os as { cpus: () => os.CpuInfo[] }).cpus = stretched;
      return new tfwasm.BackendWasm(module as never);
    } finally {
      (os as { cpus: () => os.CpuInfo[] }).cpus = realCpus;
      // The pool's threads now exist; idle workers must not keep the process alive.
      const pool = module.PThread;
      for (const worker of [...(pool?.unusedWorkers ?? []), ...(pool?.runningWorkers ?? [])]) {
        worker.unref?.();
      }
    }
  }, WASM_PRIORITY);
  return threads;
}

/**
 * Terminates the pthread workers. They are unref'd, so a process exits without this; it is for
 * code that wants the threads gone now. The wasm backend is unusable afterwards. Safe to call
 * when nothing was loaded.
 */
export function shutdownThreadedWasm(): void {
  if (loaded == null) return;
  const { module } = loaded;
  loaded = null;
  module.PThread?.terminateAllThreads();
}

/** Number of threads of the loaded threaded build, or 0 when it is not loaded. */
export function threadedWasmThreads(): number {
  return loaded?.threads ?? 0;
}
