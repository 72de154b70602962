/**
 * Seeded fuzzing of digitsum's readers (used by tests/fuzz_*_test.ts).
 *
 * A case is a set of files (one mutated file, sometimes beside valid ones) handed to a reader in a
 * worker (tests/fuzz_worker.ts). Every case must end in a result or in one plain `Error` whose
 * message names the mutated file; never a `TypeError`/`RangeError` (an unchecked field reached the
 * code), a hang (the worker is stopped after {@linkcode HANG_MS}), or gigabytes of buffers
 * allocated because a header said so (the worker reports its external memory after each case).
 *
 * Case counts: `DIGITSUM_FUZZ=long` runs {@linkcode LONG_FACTOR} times as many random cases;
 * `DIGITSUM_FUZZ_SEED=N` draws another set (default 17); `DIGITSUM_FUZZ_VERBOSE=1` lists the most
 * frequent kinds of error message and the slowest cases; `DIGITSUM_FUZZ_KEEP_GOING=1` runs every
 * case and lists all failures instead of stopping at the first. Failures name the seed and case.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MT19937 } from "../lib/data/numpy_random.ts";

/** Whether the long mode was asked for (`DIGITSUM_FUZZ=long`). */
export const FUZZ_LONG = Deno.env.get("DIGITSUM_FUZZ") === "long";
/** How many times as many random cases the long mode runs. */
export const LONG_FACTOR = 20;
/** Seed of every case generator (`DIGITSUM_FUZZ_SEED`). */
export const FUZZ_SEED = Number(Deno.env.get("DIGITSUM_FUZZ_SEED") ?? 17);
/** A case that takes longer than this is a hang. */
export const HANG_MS = 10_000;
/** Most external (ArrayBuffer) memory a case may hold, above the worker's baseline. */
export const MAX_EXTERNAL_BYTES = 256 * 2 ** 20;
/** Error classes that mean a field went unchecked. */
const CRASH_CLASSES = new Set([
  "TypeError",
  "RangeError",
  "ReferenceError",
  "SyntaxError",
  "URIError",
  "EvalError",
  "AggregateError",
]);
/** Message fragments that mean an unchecked value leaked into the text. */
const JUNK_MESSAGE = /\bundefined\b|\[object |\b(needs|holds|got|expects|of) NaN\b/;

/** Number of random cases: `base` in CI, `LONG_FACTOR` times more in the long mode. */
export function caseCount(base: number): number {
  return FUZZ_LONG ? base * LONG_FACTOR : base;
}

/** A seeded generator for one stream of cases (MT19937, as NumPy's legacy generator). */
export class FuzzRandom {
  readonly #mt = new MT19937();

  /** @param stream name of the stream; with {@linkcode FUZZ_SEED} it selects the sequence */
  constructor(stream: string) {
    let hash = 2166136261;
    for (const char of stream) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
    this.#mt.seedByArray([FUZZ_SEED >>> 0, hash]);
  }

  /** Integer in 0..n-1 (0 when n <= 1). */
  below(n: number): number {
    return n <= 1 ? 0 : this.#mt.randomInterval(Math.min(n, 2 ** 32) - 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#mt.nextDouble() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.below(256);
    return out;
  }
}

/** One fuzz case: the files a reader gets, and which of them was mutated. */
export interface FuzzCase {
  /** What was done, for failure messages, e.g. `truncate model.json to 120 bytes`. */
  label: string;
  /** Files by name (relative to the case directory); `null` = the file is absent. */
  files: Record<string, Uint8Array | null>;
  /** The file whose error message must name it. */
  target: string;
}

/** Lengths to truncate a file of `size` bytes to: every length, or the boundaries +-1. */
export function truncationLengths(size: number, boundaries: readonly number[]): number[] {
  const lengths = new Set<number>([0]);
  for (const b of boundaries) {
    for (const d of [-1, 0, 1]) if (b + d >= 0 && b + d < size) lengths.add(b + d);
  }
  return [...lengths].sort((a, b) => a - b);
}

/** Extreme 32-bit values that headers hold as lengths or dimensions. */
export const EXTREME_U32 = [
  0,
  1,
  2,
  0x7f,
  0xff,
  0x100,
  0xffff,
  0x10000,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

/** One random byte-level mutation of `bytes` (1 to 3 stacked), with a label. */
export function mutateBytes(
  bytes: Uint8Array,
  rng: FuzzRandom,
): { label: string; bytes: Uint8Array } {
  let out: Uint8Array = bytes.slice();
  const steps: string[] = [];
  const rounds = 1 + rng.below(3);
  for (let r = 0; r < rounds; r++) {
    const at = rng.below(Math.max(1, out.length));
    switch (rng.below(8)) {
      case 0: { // flip bits of a few bytes
        const n = 1 + rng.below(4);
        for (let i = 0; i < n && out.length; i++) {
          const p = rng.chance(0.5) ? at : rng.below(out.length);
          out[p] ^= 1 + rng.below(255);
        }
        steps.push(`flip ${n} byte(s) near ${at}`);
        break;
      }
      case 1: { // set a byte to an extreme
        const value = rng.pick([0x00, 0x01, 0x7f, 0x80, 0xff]);
        if (out.length) out[at] = value;
        steps.push(`byte ${at} = ${value}`);
        break;
      }
      case 2: { // overwrite a 32-bit word (either byte order) with an extreme
        const value = rng.pick(EXTREME_U32);
        const little = rng.chance(0.5);
        if (at + 4 <= out.length) {
          new DataView(out.buffer, out.byteOffset).setUint32(at, value, little);
        }
        steps.push(`u32 at ${at} = ${value} (${little ? "LE" : "BE"})`);
        break;
      }
      case 3: { // cut at a random length
        out = out.slice(0, at);
        steps.push(`truncate to ${at}`);
        break;
      }
      case 4: { // insert random bytes
        const extra = rng.bytes(1 + rng.below(16));
        out = concat(out.subarray(0, at), extra, out.subarray(at));
        steps.push(`insert ${extra.length} byte(s) at ${at}`);
        break;
      }
      case 5: { // delete a range
        const n = 1 + rng.below(Math.max(1, Math.min(64, out.length - at)));
        out = concat(out.subarray(0, at), out.subarray(at + n));
        steps.push(`delete ${n} byte(s) at ${at}`);
        break;
      }
      case 6: { // duplicate a range
        const n = 1 + rng.below(64);
        out = concat(out.subarray(0, at + n), out.subarray(at));
        steps.push(`duplicate ${n} byte(s) at ${at}`);
        break;
      }
      default: { // append garbage
        const extra = rng.bytes(1 + rng.below(32));
        out = concat(out, extra);
        steps.push(`append ${extra.length} byte(s)`);
      }
    }
  }
  return { label: steps.join(", "), bytes: out };
}

/** Random bytes of a random length, sometimes starting with a format's magic. */
export function randomFile(
  rng: FuzzRandom,
  magic: Uint8Array,
): { label: string; bytes: Uint8Array } {
  const length = rng.pick([0, 1, 2, 7, 8, 16, 64, 200, 1000, 5000]) + rng.below(8);
  const out = rng.bytes(length);
  const withMagic = rng.chance(0.5);
  if (withMagic) out.set(magic.subarray(0, Math.min(magic.length, out.length)));
  return { label: `${length} random bytes${withMagic ? " after the magic" : ""}`, bytes: out };
}

/** Bytes of the parts, in order. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Extreme JSON values for structure-aware mutations. */
const EXTREME_JSON: unknown[] = [
  null,
  true,
  0,
  -1,
  -0.5,
  1.5,
  1e308,
  -1e308,
  2 ** 53 + 2,
  4294967296,
  "",
  "x",
  "NaN",
  "constructor",
  "__proto__",
  "../../etc/passwd",
  [],
  [null],
  [-1],
  [1e12, 1e12],
  {},
  { "__proto__": 1 },
];

/** Paths (keys and indices) to every value in a parsed JSON document. */
function jsonPaths(
  value: unknown,
  prefix: (string | number)[] = [],
  out: (string | number)[][] = [],
) {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => jsonPaths(v, [...prefix, i], out));
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) jsonPaths(v, [...prefix, k], out);
  }
  return out;
}

/**
 * One structure-aware mutation of a JSON document: a value replaced by an extreme one, a key
 * removed, a value wrapped deeply, an array emptied or a string made huge.
 */
export function mutateJson(
  text: string,
  rng: FuzzRandom,
  weighted: readonly string[] = [],
): { label: string; text: string } {
  const root = JSON.parse(text);
  const paths = jsonPaths(root);
  // Prefer paths through the fields a reader depends on, when given.
  const preferred = weighted.length
    ? paths.filter((p) => p.some((k) => typeof k === "string" && weighted.includes(k)))
    : [];
  const path = preferred.length && rng.chance(0.7) ? rng.pick(preferred) : rng.pick(paths);
  const where = path.length ? path.join(".") : "(root)";
  const op = rng.below(6);
  let label: string;
  let replacement: unknown;
  switch (op) {
    case 0:
    case 1:
      replacement = structuredClone(rng.pick(EXTREME_JSON));
      label = `${where} = ${JSON.stringify(replacement)}`;
      break;
    case 2:
      replacement = undefined; // remove
      label = `remove ${where}`;
      break;
    case 3: {
      let nested: unknown = 0;
      const depth = rng.pick([10, 1000, 100_000]);
      // Built as text (a real deep value would overflow JSON.stringify itself).
      label = `${where} nested ${depth} deep`;
      const marker = "\u0000DEEP\u0000";
      replacement = marker;
      const mutated = setPath(root, path, replacement);
      const deep = "[".repeat(depth) + "0" + "]".repeat(depth);
      nested = JSON.stringify(mutated).replace(JSON.stringify(marker), deep);
      return { label, text: nested as string };
    }
    case 4:
      replacement = "x".repeat(rng.pick([1000, 1_000_000]));
      label = `${where} = huge string`;
      break;
    default: {
      const current = getPath(root, path);
      replacement = Array.isArray(current)
        ? (rng.chance(0.5) ? [] : [...current, ...current])
        : typeof current === "number"
        ? rng.pick([-current, current * 1e9, current + 0.5, 0, -1])
        : rng.pick(EXTREME_JSON);
      label = `${where}: ${JSON.stringify(current)?.slice(0, 40)} -> ${
        JSON.stringify(replacement)?.slice(0, 40)
      }`;
    }
  }
  const mutated = setPath(root, path, replacement);
  const out = mutated === undefined ? "" : JSON.stringify(mutated);
  return { label, text: rng.chance(0.1) ? out.replace(/1e\+?308/g, "NaN") : out };
}

function getPath(root: unknown, path: (string | number)[]): unknown {
  let value = root;
  for (const key of path) value = (value as Record<string | number, unknown>)?.[key];
  return value;
}

/** A copy of `root` with the value at `path` replaced (`undefined` removes it). */
function setPath(root: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (last === "__proto__") {
    Object.defineProperty(parent, last, { value, enumerable: true, writable: true });
  } else {
    parent[last] = value;
  }
  return copy;
}

/** What the worker reports for one case. */
export interface FuzzOutcome {
  ok: boolean;
  /** Short description of the result (ok) or the error's class (not ok). */
  summary: string;
  message?: string;
  ms: number;
  /** External memory (ArrayBuffers) of the worker after the case, in bytes. */
  external: number;
}

/** Totals of one format's fuzzing. */
export interface FuzzStats {
  format: string;
  cases: number;
  results: number;
  errors: number;
  slowestMs: number;
  slowestLabel: string;
  /** Milliseconds spent inside the readers, all cases together. */
  totalMs: number;
  /** The ten slowest cases, slowest first. */
  slowest: Array<{ ms: number; label: string }>;
  peakExternalBytes: number;
  /** Distinct error messages (file names and numbers replaced), with counts. */
  messages: Map<string, number>;
}

/** A worker running one format's reader; restarted after a hang. */
class FuzzWorker {
  #worker?: Worker;
  #pending?: { resolve: (o: FuzzOutcome) => void };
  #baseline = 0;

  constructor(readonly format: string, readonly root: string) {}

  async #start(): Promise<void> {
    this.#worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker.onmessage = (event: MessageEvent<FuzzOutcome>) => {
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.resolve(event.data);
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.resolve({
        ok: false,
        summary: "uncaught",
        message: event.message,
        ms: 0,
        external: 0,
      });
    };
    const ready = await this.#send({ init: { format: this.format, root: this.root } });
    this.#baseline = ready.external;
  }

  #send(message: unknown): Promise<FuzzOutcome> {
    return new Promise((resolve) => {
      this.#pending = { resolve };
      this.#worker!.postMessage(message);
    });
  }

  /** Run one case; resolves with `summary: "hang"` when it exceeds {@linkcode HANG_MS}. */
  async run(fuzzCase: FuzzCase): Promise<FuzzOutcome & { baseline: number }> {
    if (!this.#worker) await this.#start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hang = new Promise<FuzzOutcome>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, summary: "hang", ms: HANG_MS, external: 0 }),
        HANG_MS,
      );
    });
    const outcome = await Promise.race([this.#send({ case: fuzzCase }), hang]);
    clearTimeout(timer);
    if (outcome.summary === "hang") this.stop();
    return { ...outcome, baseline: this.#baseline };
  }

  stop(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#pending = undefined;
  }
}

/** Message with paths, numbers and quoted text generalised, for counting kinds of errors. */
function messageKind(message: string, root: string): string {
  return message.split(root).join("<dir>").replace(/'[^']*'/g, "'…'").replace(/\d+/g, "N")
    .slice(0, 140);
}

/** Whether to run every case and list all failures (`DIGITSUM_FUZZ_KEEP_GOING=1`). */
const KEEP_GOING = Deno.env.get("DIGITSUM_FUZZ_KEEP_GOING") === "1";

/** Record one outcome in `stats`; returns why it fails the rules, or `undefined`. */
function checkOutcome(
  fuzzCase: FuzzCase,
  outcome: FuzzOutcome & { baseline: number },
  stats: FuzzStats,
  root: string,
): string | undefined {
  if (outcome.summary === "hang") return `no answer after ${HANG_MS} ms`;
  const external = outcome.external - outcome.baseline;
  stats.peakExternalBytes = Math.max(stats.peakExternalBytes, external);
  if (external > MAX_EXTERNAL_BYTES) {
    return `${(external / 2 ** 20).toFixed(0)} MiB of buffers allocated`;
  }
  stats.totalMs += outcome.ms;
  if (stats.slowest.length < 10 || outcome.ms > stats.slowest[9].ms) {
    stats.slowest.push({ ms: outcome.ms, label: fuzzCase.label.slice(0, 120) });
    stats.slowest.sort((a, b) => b.ms - a.ms).splice(10);
  }
  if (outcome.ms > stats.slowestMs) {
    stats.slowestMs = outcome.ms;
    stats.slowestLabel = fuzzCase.label;
  }
  if (outcome.ok) {
    stats.results += 1;
    return undefined;
  }
  stats.errors += 1;
  const message = outcome.message ?? "";
  if (
    CRASH_CLASSES.has(outcome.summary) || outcome.summary === "uncaught" ||
    outcome.summary === "non-error"
  ) {
    return `${outcome.summary}: ${message}`;
  }
  if (!message.includes(fuzzCase.target)) {
    return `the error does not name ${fuzzCase.target}: ${message}`;
  }
  // TensorFlow.js' own words, quoted after "tfjs says:", are not ours to word.
  const ours = message.replace(/\(tfjs says: [\s\S]*\)$/, "");
  if (JUNK_MESSAGE.test(ours)) return `unclear error: ${message}`;
  const kind = messageKind(message.split("\n")[0], root);
  stats.messages.set(kind, (stats.messages.get(kind) ?? 0) + 1);
  return undefined;
}

/**
 * Run every case through the format's reader and check each outcome; throws an AssertionError
 * naming the seed and the case at the first case that crashes, hangs or allocates too much.
 *
 * @param format reader name in tests/fuzz_worker.ts
 * @param cases the cases (generated lazily)
 * @returns the totals, also printed as one line
 */
export async function runFuzz(format: string, cases: Iterable<FuzzCase>): Promise<FuzzStats> {
  // A memory file system when there is one: thousands of tiny files are written.
  const shm = await Deno.stat("/dev/shm").then((info) => info.isDirectory, () => false);
  const root = await Deno.makeTempDir({
    prefix: `digitsum_fuzz_${format}_`,
    dir: shm ? "/dev/shm" : undefined,
  });
  const worker = new FuzzWorker(format, root);
  const stats: FuzzStats = {
    format,
    cases: 0,
    results: 0,
    errors: 0,
    slowestMs: 0,
    slowestLabel: "",
    totalMs: 0,
    slowest: [],
    peakExternalBytes: 0,
    messages: new Map(),
  };
  const failures: string[] = [];
  try {
    for (const fuzzCase of cases) {
      const outcome = await worker.run(fuzzCase);
      stats.cases += 1;
      const where = `${format} case ${stats.cases} (seed ${FUZZ_SEED}): ${fuzzCase.label}`;
      const failure = checkOutcome(fuzzCase, outcome, stats, root);
      if (failure === undefined) continue;
      if (!KEEP_GOING) assert.fail(`${where}: ${failure}`);
      failures.push(`${where}: ${failure}`.slice(0, 400));
    }
  } finally {
    worker.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
  if (failures.length) {
    for (const failure of failures) console.log(`FAIL ${failure}`);
    assert.fail(`${failures.length} of ${stats.cases} ${format} cases failed (listed above)`);
  }
  console.log(
    `fuzz ${format}: ${stats.cases} cases (seed ${FUZZ_SEED}${FUZZ_LONG ? ", long" : ""}): ` +
      `${stats.results} results, ${stats.errors} clear errors of ${stats.messages.size} kinds; ` +
      `${(stats.totalMs / 1000).toFixed(1)} s in the readers, slowest case ` +
      `${stats.slowestMs.toFixed(1)} ms, peak buffers ${
        (stats.peakExternalBytes / 2 ** 20).toFixed(1)
      } MiB`,
  );
  if (Deno.env.get("DIGITSUM_FUZZ_VERBOSE")) {
    const kinds = [...stats.messages].sort((a, b) => b[1] - a[1]);
    for (const [kind, n] of kinds.slice(0, 40)) console.log(`  ${String(n).padStart(6)}  ${kind}`);
    for (const { ms, label } of stats.slowest) {
      console.log(`  ${ms.toFixed(0).padStart(6)} ms ${label}`);
    }
  }
  return stats;
}
