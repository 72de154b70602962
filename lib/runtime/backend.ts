/**
 * THE backend chooser: every CLI, notebook, benchmark and test that needs a tfjs backend calls
 * {@link initBackend} once before building models.
 *
 * `auto` takes the native TensorFlow backend (`@tensorflow/tfjs-node-gpu` or
 * `@tensorflow/tfjs-node`) when it is installed, else `wasm` with this project's training kernels
 * (lib/runtime/wasm_kernels.ts), multi-threaded (lib/runtime/wasm_threads.ts) unless the machine is busy or
 * `DIGITSUM_THREADS=1`, else the pure-JS `cpu` backend. `webgpu` is only used when asked for.
 *
 * @module
 */

import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import nodeUtil from "node:util";
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import { NAPI_BUILD_VERSION } from "./native_install.ts";
import { NATIVE_TORCH_ADAM } from "./native_kernels.ts";

/** Backends {@link initBackend} accepts (`auto` picks one of the others). */
export const BACKEND_NAMES = ["auto", "tensorflow", "webgpu", "wasm", "cpu"] as const;

/** One of {@link BACKEND_NAMES}. */
export type BackendName = typeof BACKEND_NAMES[number];

/** Environment variable naming the backend when the caller passes none. */
export const BACKEND_ENV = "DIGITSUM_BACKEND";

/** Environment variable with the wasm thread count when the caller passes none. */
export const THREADS_ENV = "DIGITSUM_THREADS";

/**
 * Most wasm threads chosen by default (XNNPACK's own cap). Measured on the 2-core reference
 * machine (bench/bench.ts, CNN regressor, batch 64): idle, 2 threads trained at 100-110 images/s
 * and inferred at 450-720, against 73-75 and 365 with 1 thread; with other processes on the
 * cores, 2 threads fell to 41-75 images/s while 1 thread held 73. Hence the load check in
 * {@link defaultWasmThreads}.
 */
export const MAX_DEFAULT_WASM_THREADS = 4;

/** Native packages tried by `auto`/`tensorflow`, GPU build first. */
const NATIVE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

/** How to get the native backend (shown when it is missing). */
const NATIVE_HINT = "run `deno task install-native` to try installing @tensorflow/tfjs-node";

/** What {@link initBackend} set up. */
export interface BackendInfo {
  /** The tfjs backend now active: `tensorflow`, `webgpu`, `wasm` or `cpu`. */
  name: Exclude<BackendName, "auto">;
  /** Compute threads (1 unless the threaded wasm build or a native backend runs). */
  threads: number;
  /** Kernels this project registered for the backend (empty when none). */
  kernels: string[];
  /** Package and runtime versions, e.g. `{ "tfjs-core": "4.22.0", deno: "2.9.6" }`. */
  versions: Record<string, string>;
  /** Why a backend was skipped, caveats about the one chosen. */
  notes: string[];
}

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /** wasm threads (default: env `DIGITSUM_THREADS`, else {@link defaultWasmThreads}). */
  threads?: number;
  /** Print nothing (default false). */
  quiet?: boolean;
  /** Where lines go (default `console.log`). */
  log?: (line: string) => void;
}

let current: { requested: BackendName; info: BackendInfo } | null = null;
let pending: Promise<BackendInfo> | null = null;

/**
 * Parses a backend name (case-insensitive, surrounding spaces ignored).
 *
 * @throws Error naming the accepted values when `value` is not one of {@link BACKEND_NAMES}
 */
export function parseBackendName(value: string): BackendName {
  const name = String(value).trim().toLowerCase();
  if ((BACKEND_NAMES as readonly string[]).includes(name)) return name as BackendName;
  throw new Error(`Unknown backend '${value}': expected one of ${BACKEND_NAMES.join(", ")}`);
}

/**
 * Parses a wasm thread count: a positive integer.
 *
 * @param source where the value came from, for the error message
 */
export function parseThreads(value: string | number, source = "threads"): number {
  const n = typeof value === "number" ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new Error(`Invalid ${source} '${value}': expected an integer from 1 to 64`);
  }
  return n;
}

function readEnv(name: string): string | undefined {
  try {
    const value = Deno.env.get(name);
    return value === undefined || value.trim() === "" ? undefined : value;
  } catch {
    return undefined; // no --allow-env
  }
}

/**
 * Selects and initialises the tfjs backend; later calls return the same {@link BackendInfo}
 * (a later call naming a different backend switches to it).
 *
 * @param requested backend name (default: env `DIGITSUM_BACKEND`, else `auto`)
 * @throws Error when an explicitly requested backend cannot start (`auto` never throws for a
 *   missing backend; it falls back and says why in `notes`)
 */
export async function initBackend(
  requested?: BackendName | string,
  options: InitBackendOptions = {},
): Promise<BackendInfo> {
  const name = parseBackendName(requested ?? readEnv(BACKEND_ENV) ?? "auto");
  const envThreads = readEnv(THREADS_ENV);
  const defaults = defaultWasmThreads();
  const explicit = options.threads != null
    ? parseThreads(options.threads)
    : envThreads != null
    ? parseThreads(envThreads, THREADS_ENV)
    : undefined;
  const threads = explicit ?? defaults.threads;
  // TensorFlow's own pool does not suffer from a busy machine the way wasm's does: every core.
  const nativeThreads = explicit ?? coreCount();
  const threadNote = options.threads == null && envThreads == null ? defaults.note : undefined;
  while (pending != null) await pending.catch(() => {});
  if (
    current != null &&
    (name === "auto" || name === current.requested || name === current.info.name)
  ) {
    return current.info;
  }
  const log = options.quiet ? () => {} : (options.log ?? ((line: string) => console.log(line)));
  pending = select(name, { threads, nativeThreads, explicitThreads: explicit != null }, log);
  try {
    const info = await pending;
    if (threadNote && info.name === "wasm") info.notes.push(threadNote);
    current = { requested: name, info };
    log(describe(info));
    return info;
  } finally {
    pending = null;
  }
}

/**
 * The wasm thread count used when neither the `threads` option nor `DIGITSUM_THREADS` gives
 * one: every core (at most {@link MAX_DEFAULT_WASM_THREADS}), but 1 when the machine is already
 * busy (1-minute load average above half the cores), where the pool's threads wait on each
 * other. Results do not depend on the thread count.
 */
export function defaultWasmThreads(): { threads: number; note?: string } {
  const cores = coreCount();
  if (cores < 2) return { threads: 1 };
  const load = os.loadavg()[0];
  if (load > cores / 2) {
    return {
      threads: 1,
      note: `machine busy (load ${load.toFixed(1)} on ${cores} cores): 1 wasm thread; ` +
        `set ${THREADS_ENV} to choose`,
    };
  }
  return { threads: Math.min(cores, MAX_DEFAULT_WASM_THREADS) };
}

/** Logical cores of this machine (at least 1). */
function coreCount(): number {
  return Math.max(1, navigator.hardwareConcurrency || os.cpus().length || 1);
}

/** The {@link BackendInfo} of the last successful {@link initBackend}, or null. */
export function currentBackend(): BackendInfo | null {
  return current?.info ?? null;
}

/**
 * Releases what {@link initBackend} started: the threaded wasm build's workers are terminated.
 * The next {@link initBackend} starts afresh. Processes exit without calling this.
 */
export async function shutdownBackend(): Promise<void> {
  while (pending != null) await pending.catch(() => {});
  if (current?.info.name === "wasm" && current.info.threads > 1) {
    const { shutdownThreadedWasm } = await import("./wasm_threads.ts");
    tf.removeBackend("wasm");
    shutdownThreadedWasm();
  }
  current = null;
}

/** The one line printed after initialisation, e.g. `Backend: wasm (1 thread, ...)`. */
export function describe(info: BackendInfo): string {
  const parts: string[] = [];
  if (info.name === "wasm") {
    parts.push(`${info.threads} thread${info.threads === 1 ? "" : "s"}`);
    if (info.kernels.length > 0) parts.push("digitsum training kernels");
  } else if (info.name === "cpu") {
    parts.push("pure JS, very slow for training");
  } else if (info.name === "tensorflow") {
    parts.push(`${info.threads} thread${info.threads === 1 ? "" : "s"}`);
    if (info.kernels.includes(NATIVE_TORCH_ADAM)) parts.push("digitsum training kernels in C++");
    else if (info.kernels.length > 0) parts.push("digitsum training kernels");
    const library = info.versions.libtensorflow;
    parts.push(
      `native TensorFlow${library ? ` ${library}` : ""} via ` +
        (info.versions["native-package"] ?? "tfjs-node"),
    );
  } else if (info.name === "webgpu") {
    parts.push(info.versions["webgpu-adapter"] ?? "WebGPU");
  }
  return `Backend: ${info.name} (${parts.join(", ")})`;
}

async function select(
  name: BackendName,
  { threads, nativeThreads, explicitThreads }: {
    threads: number;
    nativeThreads: number;
    explicitThreads: boolean;
  },
  log: (line: string) => void,
): Promise<BackendInfo> {
  const notes: string[] = [];
  if (name === "tensorflow") return await startTensorflow(nativeThreads, explicitThreads, notes);
  if (name === "webgpu") return await startWebgpu(notes);
  if (name === "wasm") return await startWasm(threads, notes);
  if (name === "cpu") return await startCpu(notes);
  // auto
  try {
    return await startTensorflow(nativeThreads, explicitThreads, notes);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    notes.push(message);
    log(`Note: ${message}`);
  }
  try {
    return await startWasm(threads, notes);
  } catch (error) {
    notes.push(`wasm backend failed: ${error instanceof Error ? error.message : error}`);
  }
  return await startCpu(notes);
}

function baseVersions(): Record<string, string> {
  const versions: Record<string, string> = { ...(tf.version as Record<string, string>) };
  versions.deno = Deno.version.deno;
  return versions;
}

async function activate(name: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (error) {
    throw new Error(`tfjs could not initialise the ${name} backend: ${error}`);
  }
  if (!ok || tf.getBackend() !== name) {
    throw new Error(`tfjs could not initialise the ${name} backend`);
  }
  await tf.ready();
}

/**
 * What Deno's `node:util` lacks and `@tensorflow/tfjs-node` calls (`util.isNullOrUndefined`,
 * removed from Node's util); installed once, before the package is loaded.
 */
function shimNodeUtil(): void {
  const util = nodeUtil as unknown as Record<string, unknown>;
  if (typeof util.isNullOrUndefined !== "function") {
    util.isNullOrUndefined = (value: unknown) => value === null || value === undefined;
  }
}

/**
 * The backend `auto` would start, without starting it: `tensorflow` once `deno task
 * install-native` has built the native addon, else `wasm` (for time estimates; `initBackend` still
 * falls back if the addon then fails to load).
 */
export function autoBackendGuess(): "tensorflow" | "wasm" {
  return builtNativePackages(createRequire(import.meta.url)).length > 0 ? "tensorflow" : "wasm";
}

/**
 * The native packages in node_modules whose addon `deno task install-native` has built, GPU build
 * first, with the path `require` loads them from.
 */
function builtNativePackages(require: NodeJS.Require): Array<{ pkg: string; path: string }> {
  const built: Array<{ pkg: string; path: string }> = [];
  for (const pkg of NATIVE_PACKAGES) {
    let path: string;
    try {
      path = require.resolve(pkg);
    } catch {
      continue; // not in node_modules
    }
    // The package is always in node_modules (deno.json); its addon exists once install-native ran.
    if (nativeAddonBuilt(require, pkg)) built.push({ pkg, path });
  }
  return built;
}

/** Whether `deno task install-native` put the package's N-API addon in place. */
function nativeAddonBuilt(require: NodeJS.Require, pkg: string): boolean {
  try {
    const dir = dirname(require.resolve(`${pkg}/package.json`));
    return Deno.statSync(join(dir, "lib", `napi-v${NAPI_BUILD_VERSION}`, "tfjs_binding.node"))
      .isFile;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` with file descriptor 2 pointed at /dev/null (Linux, through libc's dup/dup2), then
 * restores it; runs `fn` plainly where that is not possible.
 */
function withStderrSilenced<T>(fn: () => T): T {
  const symbols = {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    dup: { parameters: ["i32"], result: "i32" },
    dup2: { parameters: ["i32", "i32"], result: "i32" },
  } as const;
  let libc: Deno.DynamicLibrary<typeof symbols> | undefined;
  let saved = -1;
  try {
    if (Deno.build.os === "linux") {
      libc = Deno.dlopen("libc.so.6", symbols);
      const devNull = libc.symbols.open(new TextEncoder().encode("/dev/null\0"), 1); // O_WRONLY
      if (devNull >= 0) {
        saved = libc.symbols.dup(2);
        if (saved >= 0 && libc.symbols.dup2(devNull, 2) < 0) {
          libc.symbols.close(saved);
          saved = -1;
        }
        libc.symbols.close(devNull);
      }
    }
  } catch {
    // no FFI permission or no libc: the lines will show
  }
  try {
    return fn();
  } finally {
    if (libc && saved >= 0) {
      libc.symbols.dup2(saved, 2);
      libc.symbols.close(saved);
    }
    libc?.close();
  }
}

/** Sets an environment variable unless the user already did (TensorFlow reads them at load). */
function defaultEnv(name: string, value: string): void {
  try {
    if (Deno.env.get(name) === undefined) Deno.env.set(name, value);
  } catch {
    // no --allow-env: TensorFlow keeps its own defaults
  }
}

async function startTensorflow(
  threads: number,
  explicitThreads: boolean,
  notes: string[],
): Promise<BackendInfo> {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const { pkg, path } of builtNativePackages(require)) {
    try {
      shimNodeUtil();
      // TensorFlow's C++ logging at INFO/WARNING (CPU feature notices) would interleave with ours.
      defaultEnv("TF_CPP_MIN_LOG_LEVEL", "2");
      // oneDNN's kernels (off by default in the C library): on the 2-core reference machine
      // convolution, its gradients, ReLU and max-pool gradients ran 1.2-4x faster (bench above).
      defaultEnv("TF_ENABLE_ONEDNN_OPTS", "1");
      // One intra-op pool of `threads` (an explicit digitsum setting wins over TensorFlow's own
      // variable); inter-op parallelism only adds scheduling noise here.
      if (explicitThreads) Deno.env.set("TF_NUM_INTRAOP_THREADS", String(threads));
      else defaultEnv("TF_NUM_INTRAOP_THREADS", String(threads));
      defaultEnv("TF_NUM_INTEROP_THREADS", "1");
      // Loading libtensorflow prints two lines to stderr (absl's pre-init warning and oneDNN's
      // notice) that no environment variable silences: keep them out of every command's output.
      withStderrSilenced(() => require(path));
      const { loadNativeKernelLibrary, registerNativeTrainingKernels } = await import(
        "./native_kernels.ts"
      );
      const packageDir = dirname(require.resolve(`${pkg}/package.json`));
      const actualThreads = Number(Deno.env.get("TF_NUM_INTRAOP_THREADS")) || threads;
      const missing = loadNativeKernelLibrary(packageDir, actualThreads);
      if (missing) notes.push(`digitsum's native kernels not loaded: ${missing}`);
      const kernels = registerNativeTrainingKernels();
      await activate("tensorflow");
      const versions = baseVersions();
      versions["native-package"] = pkg;
      try {
        const json = require(`${pkg}/package.json`) as { version?: string };
        if (json.version) versions[pkg.replace("@tensorflow/", "")] = json.version;
      } catch {
        // version unknown
      }
      const binding = (tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding;
      if (binding?.TF_Version) versions.libtensorflow = binding.TF_Version;
      return { name: "tensorflow", threads: actualThreads, kernels, versions, notes };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const hint = /tfjs_binding\.node|libtensorflow/.test(message)
        ? ` (its native addon is not built: ${NATIVE_HINT})`
        : "";
      failures.push(`${pkg} does not load: ${message}${hint}`);
    }
  }
  if (failures.length > 0) {
    throw new Error(`Native TensorFlow backend unavailable: ${failures.join("; ")}`);
  }
  throw new Error(`Native TensorFlow backend not installed (${NATIVE_HINT})`);
}

async function startWasm(threads: number, notes: string[]): Promise<BackendInfo> {
  const { registerWasmTrainingKernels } = await import("./wasm_kernels.ts");
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  let threaded = false;
  if (threads > 1) {
    const { registerThreadedWasmBackend } = await import("./wasm_threads.ts");
    try {
      await registerThreadedWasmBackend(threads);
      threaded = true;
    } catch (error) {
      notes.push(`threaded wasm unavailable (${error}); using 1 thread`);
    }
  }
  const kernels = registerWasmTrainingKernels();
  await activate("wasm");
  const versions = baseVersions();
  versions["tfjs-backend-wasm"] = wasm.version_wasm;
  const actual = threaded ? wasm.getThreadsCount() : 1;
  if (threaded && actual !== threads) {
    notes.push(`asked for ${threads} wasm threads, XNNPACK uses ${actual}`);
  }
  return { name: "wasm", threads: actual, kernels, versions, notes };
}

async function startCpu(notes: string[]): Promise<BackendInfo> {
  await activate("cpu");
  // tfjs-backend-cpu greets Node users with an advert for tfjs-node on first use; our own notes
  // say what is available instead.
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  notes.push("the cpu backend trains the study's CNN at roughly 80 s per batch of 8");
  return { name: "cpu", threads: 1, kernels: [], versions: baseVersions(), notes };
}

async function startWebgpu(notes: string[]): Promise<BackendInfo> {
  const gpu = (navigator as unknown as {
    gpu?: { requestAdapter(): Promise<unknown> };
  }).gpu;
  if (gpu == null) {
    throw new Error("WebGPU backend requested but navigator.gpu is missing in this Deno");
  }
  const adapter = await gpu.requestAdapter() as
    | { info?: { description?: string; vendor?: string; isFallbackAdapter?: boolean } }
    | null;
  if (adapter == null) {
    throw new Error(
      "WebGPU backend requested but no GPU adapter was found (on Linux a Vulkan driver is needed, " +
        "e.g. Debian's mesa-vulkan-drivers)",
    );
  }
  await import("@tensorflow/tfjs-backend-webgpu");
  await activate("webgpu");
  const versions = baseVersions();
  const description = adapter.info?.description || adapter.info?.vendor || "unknown adapter";
  versions["webgpu-adapter"] = description;
  // Synchronous reads draw through a 2D canvas, which Deno does not have.
  const backend = tf.backend() as unknown as { readSync(dataId: unknown): unknown };
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: unknown) => {
    try {
      return readSync(dataId);
    } catch (error) {
      throw new Error(
        "The webgpu backend cannot read tensors synchronously under Deno (dataSync/arraySync " +
          `need a 2D canvas); use await tensor.data() instead (${error})`,
      );
    }
  };
  notes.push("synchronous reads (dataSync, arraySync) fail under Deno; use await data()");
  if (adapter.info?.isFallbackAdapter) {
    notes.push(`WebGPU runs on a software adapter (${description}): expect it to be slow`);
  }
  return { name: "webgpu", threads: 1, kernels: [], versions, notes };
}
