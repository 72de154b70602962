/**
 * The whole study as one resumable grid of runs (models x seeds), headless: `deno task sweep`.
 *
 * Layout of an output directory (default `runs/sweep`):
 *
 * ```
 * <out>/config.json              the sweep's configuration (one training setup per directory)
 * <out>/runs/<model>_<seed>/
 *   config.json                  the run's RunConfig, written before it starts
 *   history.json                 per-epoch train loss, validation accuracy, seconds (grows)
 *   result.json                  written last: status done|skipped|failed, accuracies, ...
 *   val_predictions.json         predicted and true sum per validation image
 *   checkpoint/                  the trained model (tfjs layers format)
 *   state/                       per-epoch resumable state, removed once result.json exists
 *   log.txt                      everything the run printed
 * <out>/RESULTS.md, results.json, report.html, figures/   (lib/report.ts)
 * ```
 *
 * A run is finished when its `result.json` says `done`; a re-run skips it. A run interrupted
 * mid-way resumes from `state/` (its last completed epoch) to the same final numbers. A run
 * directory never changes configuration: a sweep whose configuration differs from what a run
 * directory records is refused before anything is trained.
 *
 * @module
 */
import { basename, join } from "node:path";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  EPOCHS,
  IMAGES_PER_FILE,
  LEARNING_RATE,
  STUDY_SEEDS,
  TRAIN_FRACTION,
} from "../constants.ts";
import {
  configDifference,
  describeValue,
  type RunConfig,
  runExperiment,
  type RunResult,
  RunStoppedError,
  studyConfig,
} from "../training/experiment.ts";
import { parseBackendName } from "../runtime/backend.ts";
import { recoverCheckpoint } from "../training/checkpoint.ts";
import {
  ensureDir,
  exists,
  isStorageError,
  removeStaleTemps,
  writeJsonAtomic,
} from "../io/fsutil.ts";
import { formatDuration, ProgressBar } from "../runtime/progress.ts";
import { type EpochRecord, historyProblem } from "../training/train.ts";
import { estimateVggSeconds, VGG_WEIGHTS_COMMAND, vggWeightsPath } from "../models/vgg.ts";
import { type DataFingerprint, dataFingerprint, ensureDataset } from "../data/generate.ts";
import { modelInfo, modelKinds } from "../models/mod.ts";

/** What a sweep trains: the grid and the training setup shared by all its runs. */
export interface SweepConfig {
  /** Model kinds, in table-column order. */
  models: string[];
  /** Seeds, in table-row order. */
  seeds: number[];
  /** Epochs per run. */
  epochs: number;
  /** Images per batch. */
  batchSize: number;
  /** Adam learning rate. */
  learningRate: number;
  /** Fraction of the 30,000 images used for training (the rest is validation). */
  trainFraction: number;
  /** Cap on training images per run (validation gets a quarter as many); `null` = all. */
  limit: number | null;
  /** Held-out test images evaluated per run (the first N of the file); `null` = all. */
  testLimit: number | null;
  /** Backend asked for (`auto|tensorflow|webgpu|wasm|cpu`); not part of a run's identity. */
  backend: string;
  /** Folder of the `.npy` files. */
  dataDir: string;
  /** Output directory. */
  out: string;
}

/** The study's sweep: three models x seeds 0, 10, 42, 15 epochs, batch 64, Adam 1e-3. */
export const SWEEP_DEFAULTS: Readonly<SweepConfig> = Object.freeze({
  // The study's three networks, in the column order of its tables.
  models: ["cnn-regressor", "cnn-classifier", "vgg-regressor"],
  // The study's seeds (the rows of its tables).
  seeds: [...STUDY_SEEDS],
  // The study trained 15 epochs (longer overfitted, it says).
  epochs: EPOCHS,
  batchSize: BATCH_SIZE,
  learningRate: LEARNING_RATE,
  trainFraction: TRAIN_FRACTION,
  // All 24,000 training and 6,000 validation images.
  limit: null,
  // All 10,000 held-out test images.
  testLimit: null,
  // `$DIGITSUM_BACKEND`, else the fastest backend that can train here (lib/backend.ts).
  backend: "auto",
  dataDir: DEFAULT_DATA_DIR,
  out: "runs/sweep",
});

/** A named, documented set of overrides of {@link SWEEP_DEFAULTS}. */
export interface Preset {
  /** Why the preset exists (printed when it is used). */
  reason: string;
  overrides: Partial<SweepConfig>;
}

/** Presets for `--<name>` flags. */
export const PRESETS: Readonly<Record<string, Preset>> = Object.freeze({
  quick: {
    reason: "smoke test of the whole pipeline (all models and seeds, tables, report) in a few " +
      "minutes on 2 CPU cores; its numbers mean nothing",
    // Evaluating 10,000 test images would take longer than training on 512 images.
    overrides: { limit: 512, testLimit: 1000, epochs: 1, out: "runs/sweep_quick" },
  },
});

/** The fields that define how runs are trained: one output directory holds one such setup. */
const SETUP_KEYS = [
  "epochs",
  "batchSize",
  "learningRate",
  "trainFraction",
  "limit",
  "testLimit",
  "dataDir",
] as const;

/** Names of the files and folders of a run directory. */
export const RUN_FILES = Object.freeze({
  config: "config.json",
  history: "history.json",
  result: "result.json",
  predictions: "val_predictions.json",
  checkpoint: "checkpoint",
  state: "state",
  log: "log.txt",
});

/** One cell of the grid. */
export interface RunSpec {
  /** `<model>_<seed>`, also the directory name. */
  key: string;
  model: string;
  seed: number;
  /** The run directory. */
  dir: string;
  /** What {@link runExperiment} gets. */
  config: RunConfig;
}

/** How a run ended, as recorded in its `result.json`. */
export type RunStatus = "done" | "skipped" | "failed";

/** Split accuracies as stored (percent, with counts). */
export interface StoredAccuracy {
  correct: number;
  total: number;
  accuracy: number;
}

/** Format tag of a run record; a reader refuses records of another format. */
export const RUN_RECORD_FORMAT = "digitsum-run/1";

/**
 * The one record of a run (its `result.json`): what was run (model, seed, config), on which data
 * (fingerprint) and backend, how each epoch went, and the overall accuracies. Training writes it,
 * the sweep merges it, the report, notebooks and README read it.
 */
export interface RunRecord {
  /** {@link RUN_RECORD_FORMAT}. */
  format: typeof RUN_RECORD_FORMAT;
  status: RunStatus;
  key: string;
  model: string;
  /** Model title for tables, e.g. `CNN Regressor`. */
  title: string;
  seed: number;
  config: RunConfig;
  /** Why the run was skipped or failed. */
  reason?: string;
  /** Overall accuracy per split (the study's "Overall Accuracy"), when done. */
  accuracy?: { train: StoredAccuracy; val: StoredAccuracy; test?: StoredAccuracy };
  history?: EpochRecord[];
  params?: number;
  /** Wall seconds of the run, epochs before a resume included. */
  seconds?: number;
  /** Backend that trained it. */
  backend?: { name: string; [key: string]: unknown };
  /** Runtime and library versions. */
  versions?: Record<string, string>;
  /** The data it was trained and tested on; records of different data are never mixed. */
  data: DataFingerprint;
  /** ISO time the record was written. */
  finishedAt: string;
}

/**
 * Throws when `records` were not all made from the same data (by fingerprint id), naming two
 * that differ; `where` says what was being combined.
 */
export function assertSameData(records: readonly RunRecord[], where: string): void {
  const first = records.find((r) => r.data);
  for (const record of records) {
    if (!record.data || !first) {
      throw new Error(`Cannot combine ${where}: run ${record.key} records no data fingerprint`);
    }
    if (record.data.id !== first.data.id) {
      throw new Error(
        `Cannot combine ${where}: ${first.key} was trained on ${describeData(first.data)} but ` +
          `${record.key} on ${describeData(record.data)}`,
      );
    }
  }
}

/** `generated data (digitsum-mnist-composites/1, seed 1, id e81580f6)` or `course data (...)`. */
export function describeData(data: DataFingerprint): string {
  const id = data.id.slice(0, 8);
  return data.source === "generated"
    ? `generated data (${data.generator}, seed ${data.seed}, id ${id})`
    : `the course's data files (id ${id})`;
}

/** Shard selection: the `index`-th (1-based) of `count` disjoint parts. */
export interface Shard {
  index: number;
  count: number;
}

/** Parse `i/n` (1 <= i <= n), as in `--shard 2/4`. */
export function parseShard(text: string, flag = "--shard"): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = match ? Number(match[1]) : NaN;
  const count = match ? Number(match[2]) : NaN;
  if (!match || count < 1 || index < 1 || index > count) {
    throw new Error(`${flag} must be i/n with 1 <= i <= n (e.g. 2/4), got '${text}'`);
  }
  return { index, count };
}

/**
 * The runs of one shard: run number k (0-based, grid order) belongs to shard `k % n + 1`.
 * Deterministic, disjoint, and together the shards cover the grid.
 */
export function selectShard<T>(runs: readonly T[], shard?: Shard): T[] {
  if (!shard || shard.count === 1) return [...runs];
  return runs.filter((_, k) => k % shard.count === shard.index - 1);
}

function fail(message: string): never {
  throw new Error(message);
}

/**
 * Defaults, then a preset, then explicit overrides; validated.
 *
 * @param overrides Values from flags (`undefined` fields are ignored).
 * @param preset Name of a {@link PRESETS} entry.
 */
export function resolveConfig(
  overrides: Partial<SweepConfig> = {},
  preset?: string,
): SweepConfig {
  if (preset !== undefined && !(preset in PRESETS)) {
    fail(`Unknown preset '${preset}': expected one of ${Object.keys(PRESETS).join(", ")}`);
  }
  const defined = Object.fromEntries(
    Object.entries(overrides).filter(([, v]) => v !== undefined),
  ) as Partial<SweepConfig>;
  const config: SweepConfig = {
    ...SWEEP_DEFAULTS,
    models: [...SWEEP_DEFAULTS.models],
    seeds: [...SWEEP_DEFAULTS.seeds],
    ...(preset ? PRESETS[preset].overrides : {}),
    ...defined,
  };
  validateConfig(config);
  return config;
}

/** Throw a clear error for an invalid configuration. */
export function validateConfig(config: SweepConfig): void {
  if (config.models.length === 0) fail("No models given: expected at least one model kind");
  for (const model of config.models) modelInfo(model); // throws, listing the known kinds
  if (new Set(config.models).size !== config.models.length) {
    fail(`Models listed twice: ${config.models.join(", ")}`);
  }
  if (config.seeds.length === 0) fail("No seeds given: expected at least one seed");
  for (const seed of config.seeds) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
      fail(`Seed ${seed} is not an integer in 0..2^32-1`);
    }
  }
  if (new Set(config.seeds).size !== config.seeds.length) {
    fail(`Seeds listed twice: ${config.seeds.join(", ")}`);
  }
  const positive: Array<[string, number]> = [
    ["epochs", config.epochs],
    ["batchSize", config.batchSize],
  ];
  if (config.limit !== null) positive.push(["limit", config.limit]);
  if (config.testLimit !== null) positive.push(["testLimit", config.testLimit]);
  for (const [name, value] of positive) {
    if (!Number.isInteger(value) || value < 1) {
      fail(`${name} must be a positive integer, got ${value}`);
    }
  }
  if (!(config.learningRate > 0)) {
    fail(`learningRate must be positive, got ${config.learningRate}`);
  }
  if (!(config.trainFraction > 0 && config.trainFraction < 1)) {
    fail(`trainFraction must be between 0 and 1, got ${config.trainFraction}`);
  }
  if (!config.out) fail("out must be a directory path");
  parseBackendName(config.backend); // throws, listing the known backends
}

/**
 * The RunConfig of one model and seed under a sweep configuration. A model with its own recipe
 * (SumNet) keeps the recipe's epochs and learning rate while the sweep has the study's (15 epochs,
 * 1e-3); a sweep that changes them (`--epochs`, `--lr`, `--quick`) changes them for every model.
 */
export function runConfigFor(config: SweepConfig, model: string, seed: number): RunConfig {
  const recipe = studyConfig(model);
  return studyConfig(model, {
    seed,
    epochs: config.epochs === SWEEP_DEFAULTS.epochs ? recipe.epochs : config.epochs,
    batchSize: config.batchSize,
    learningRate: config.learningRate === SWEEP_DEFAULTS.learningRate
      ? recipe.learningRate
      : config.learningRate,
    trainFraction: config.trainFraction,
    limit: config.limit ?? undefined,
    backend: config.backend,
    dataDir: config.dataDir,
  });
}

/** Directory of one run. */
export function runDir(out: string, model: string, seed: number): string {
  return join(out, "runs", `${model}_${seed}`);
}

/** All runs of the grid, model-major (all seeds of the first model, then the next model). */
export function sweepGrid(config: SweepConfig): RunSpec[] {
  return config.models.flatMap((model) =>
    config.seeds.map((seed) => ({
      key: `${model}_${seed}`,
      model,
      seed,
      dir: runDir(config.out, model, seed),
      config: runConfigFor(config, model, seed),
    }))
  );
}

/** Read a JSON file, or `undefined` when it does not exist; errors name the file. */
export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`Cannot read ${path}: invalid JSON (${(error as Error).message})`);
  }
}

/** Whether `value` is a plain JSON object (not null, not an array). */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `value` is an integer in 0..2^53-1. */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Whether `value` is a finite number or `null` (JSON's NaN, e.g. a diverged loss). */
function isNumberOrNull(value: unknown): boolean {
  return value === null || (typeof value === "number" && Number.isFinite(value));
}

/** Why `value` is not a stored split accuracy, or `undefined`. */
function accuracyProblem(value: unknown, split: string): string | undefined {
  if (
    !isObject(value) || !isCount(value.correct) || !isCount(value.total) ||
    value.correct > value.total || typeof value.accuracy !== "number" ||
    !(value.accuracy >= 0 && value.accuracy <= 100)
  ) {
    return `accuracy.${split} is not {correct, total, accuracy 0..100}`;
  }
  return undefined;
}

/** Why a parsed `result.json` is not a run record of run `key`, or `undefined`. */
function recordProblem(record: unknown, key: string): string | undefined {
  if (!isObject(record) || !["done", "skipped", "failed"].includes(record.status as string)) {
    return "expected a run record with status done|skipped|failed";
  }
  // Types first: a template string of a deeply nested list would overflow the stack.
  if (
    record.key !== key || typeof record.model !== "string" || !isCount(record.seed) ||
    `${record.model}_${record.seed}` !== key
  ) {
    return `it records run ${describeValue(record.key)}, not ${key}`;
  }
  if (!isObject(record.config)) return "'config' is not an object";
  if (record.reason !== undefined && typeof record.reason !== "string") {
    return "'reason' is not a string";
  }
  if (record.data !== undefined || record.status === "done") {
    const data = record.data;
    if (
      !isObject(data) || typeof data.id !== "string" || !/^[0-9a-f]{64}$/.test(data.id) ||
      !["generated", "course"].includes(data.source as string)
    ) {
      return "'data' is not a data fingerprint (source and a sha256 id)";
    }
  }
  if (record.status !== "done") return undefined;
  const accuracy = record.accuracy;
  if (!isObject(accuracy)) return "a done run needs 'accuracy'";
  const problem = accuracyProblem(accuracy.train, "train") ??
    accuracyProblem(accuracy.val, "val") ??
    (accuracy.test === undefined ? undefined : accuracyProblem(accuracy.test, "test"));
  if (problem) return problem;
  if (record.history !== undefined) {
    const history = historyProblem(record.history);
    if (history) return history;
  }
  for (const field of ["seconds", "params"]) {
    if (record[field] !== undefined && !isNumberOrNull(record[field])) {
      return `'${field}' is not a number`;
    }
  }
  if (
    record.backend !== undefined &&
    !(isObject(record.backend) && typeof record.backend.name === "string")
  ) {
    return "'backend' has no name";
  }
  return undefined;
}

/**
 * A run's `result.json`, or `undefined` when the run has not ended.
 *
 * @throws Error `Cannot read <path>: ...` when the file is not a record of this run.
 */
export async function readRunRecord(dir: string): Promise<RunRecord | undefined> {
  const path = join(dir, RUN_FILES.result);
  const record = await readJsonFile<RunRecord>(path);
  if (record === undefined) return undefined;
  const problem = recordProblem(record, basename(dir));
  if (problem) throw new Error(`Cannot read ${path}: ${problem}`);
  if (record.format !== RUN_RECORD_FORMAT) {
    throw new Error(
      `Cannot read ${path}: format ${JSON.stringify(record.format ?? null)}, expected ` +
        `${RUN_RECORD_FORMAT} (a record from an older digitsum: re-run that sweep)`,
    );
  }
  return record;
}

/**
 * A run's per-epoch history from `history.json` (`[]` when the file does not exist yet).
 *
 * @throws Error `Cannot read <path>: ...` when the file is malformed.
 */
export async function readRunHistory(dir: string): Promise<EpochRecord[]> {
  const path = join(dir, RUN_FILES.history);
  const file = await readJsonFile<{ history: EpochRecord[] }>(path);
  if (file === undefined) return [];
  const problem = isObject(file) ? historyProblem(file.history) : "expected {history: [...]}";
  if (problem) throw new Error(`Cannot read ${path}: ${problem}`);
  return file.history;
}

/** Predicted and true sums of a run's validation images (`val_predictions.json`). */
export interface ValPredictions {
  predictions: number[];
  labels: number[];
}

/**
 * A run's `val_predictions.json`, or `undefined` when it does not exist.
 *
 * @throws Error `Cannot read <path>: ...` when it is not two equally long lists of integers.
 */
export async function readValPredictions(dir: string): Promise<ValPredictions | undefined> {
  const path = join(dir, RUN_FILES.predictions);
  const file = await readJsonFile<ValPredictions>(path);
  if (file === undefined) return undefined;
  const integers = (v: unknown) => Array.isArray(v) && v.every((x) => Number.isSafeInteger(x));
  if (
    !isObject(file) || !integers(file.predictions) || !integers(file.labels) ||
    file.predictions.length !== file.labels.length
  ) {
    throw new Error(
      `Cannot read ${path}: expected {predictions, labels}, two equally long lists of integers`,
    );
  }
  return file;
}

/** Why `value` is not a sweep configuration (as `<out>/config.json` stores), or `undefined`. */
function sweepConfigProblem(value: unknown): string | undefined {
  if (!isObject(value)) return "not a sweep configuration (a JSON object)";
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  const numbers = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "number");
  if (!strings(value.models)) return "'models' is not a list of model kinds";
  if (!numbers(value.seeds)) return "'seeds' is not a list of numbers";
  for (const key of ["backend", "dataDir", "out"]) {
    if (typeof value[key] !== "string") return `'${key}' is not a string`;
  }
  for (const key of ["epochs", "batchSize", "learningRate", "trainFraction"]) {
    if (typeof value[key] !== "number") return `'${key}' is not a number`;
  }
  for (const key of ["limit", "testLimit"]) {
    if (value[key] !== null && typeof value[key] !== "number") {
      return `'${key}' is not a number or null`;
    }
  }
  try {
    validateConfig(value as unknown as SweepConfig);
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}

/**
 * A sweep folder's `config.json`, or `undefined` when it does not exist.
 *
 * @throws Error `Cannot read <path>: ...` when it is not a valid sweep configuration.
 */
export async function readSweepConfig(path: string): Promise<SweepConfig | undefined> {
  const config = await readJsonFile<SweepConfig>(path);
  if (config === undefined) return undefined;
  const problem = sweepConfigProblem(config);
  if (problem) throw new Error(`Cannot read ${path}: ${problem}`);
  return config;
}

/** A run folder's `config.json` (its RunConfig), or `undefined` when it does not exist. */
async function readRunConfig(dir: string): Promise<RunConfig | undefined> {
  const path = join(dir, RUN_FILES.config);
  const config = await readJsonFile<RunConfig>(path);
  if (config !== undefined && !isObject(config)) {
    throw new Error(`Cannot read ${path}: not a run configuration (a JSON object)`);
  }
  return config;
}

/** The setup fields of a sweep configuration (what must match to share an output directory). */
export function setupOf(config: SweepConfig): Record<string, unknown> {
  return Object.fromEntries(SETUP_KEYS.map((k) => [k, config[k]]));
}

/** Why two sweep configurations cannot share an output directory, or `undefined`. */
export function setupDifference(a: SweepConfig, b: SweepConfig): string | undefined {
  for (const key of SETUP_KEYS) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      return `${key} differs: ${describeValue(a[key])} vs ${describeValue(b[key])}`;
    }
  }
  return undefined;
}

/** Order model kinds as registered (study models first) and seeds numerically. */
function unionGrid(a: SweepConfig, b: SweepConfig): Pick<SweepConfig, "models" | "seeds"> {
  const kinds = modelKinds();
  const models = [...new Set([...a.models, ...b.models])].sort((x, y) =>
    (kinds.indexOf(x) + 1 || Infinity) - (kinds.indexOf(y) + 1 || Infinity)
  );
  const seeds = [...new Set([...a.seeds, ...b.seeds])].sort((x, y) => x - y);
  return { models, seeds };
}

/**
 * Check that `config` may write into its output directory, and record it there.
 *
 * Refuses (throws, before anything is trained) when `<out>/config.json` holds another training
 * setup, or when a run directory of the grid records another RunConfig. When the setup matches,
 * the stored grid becomes the union of both grids (a sweep can be extended by models or seeds).
 *
 * @returns The configuration as stored (grid = union).
 */
export async function prepareOutDir(config: SweepConfig, runs: readonly RunSpec[]): Promise<
  SweepConfig
> {
  const path = join(config.out, "config.json");
  const stored = await readSweepConfig(path);
  const problems: string[] = [];
  if (stored) {
    const difference = setupDifference(stored, config);
    if (difference) problems.push(`${path} records another training setup (${difference})`);
  }
  for (const run of runs) {
    const saved = await readRunConfig(run.dir);
    if (!saved) continue;
    const difference = configDifference(saved, run.config);
    if (difference) {
      problems.push(
        `${join(run.dir, RUN_FILES.config)} records a run with another configuration ` +
          `(${difference})`,
      );
    }
  }
  if (problems.length) {
    throw new Error(
      `Refusing to write into ${config.out}: finished or started runs are never overwritten.\n  ` +
        problems.join("\n  ") +
        `\nUse another --out directory, or delete the directories named above to redo them.`,
    );
  }
  const merged: SweepConfig = stored ? { ...config, ...unionGrid(stored, config) } : config;
  await ensureDir(join(config.out, "runs"));
  await writeJsonAtomic(path, merged);
  return merged;
}

/** Why a run cannot start (e.g. VGG weights missing), or `undefined`. */
export async function skipReason(model: string): Promise<string | undefined> {
  if (model !== "vgg-regressor") return undefined;
  const path = vggWeightsPath();
  if (await exists(path)) return undefined;
  return `VGG11 weights not found at ${path}; get them with \`${VGG_WEIGHTS_COMMAND}\``;
}

/** Options of {@link runSweep}. */
export interface SweepOptions {
  /** Only this shard of the grid. */
  shard?: Shard;
  /** Within the shard, only this part (used by `--workers`). */
  worker?: Shard;
  /** Line printer (default `console.log`). */
  log?: (line: string) => void;
  /** Draw progress bars (default true). */
  progress?: boolean;
  /** Stop after the current epoch when this returns true (the run stays resumable). */
  shouldStop?: () => boolean;
  /** Keep `state/` of finished runs (default false: removed once `result.json` is written). */
  keepState?: boolean;
}

/** What {@link runSweep} did. */
export interface SweepSummary {
  /** The configuration as stored in the output directory. */
  config: SweepConfig;
  /** Runs this call was responsible for. */
  selected: RunSpec[];
  /** Keys of runs found finished and left alone. */
  alreadyDone: string[];
  /** Keys of runs finished by this call. */
  finished: string[];
  /** Keys of runs skipped, with the reason. */
  skipped: Array<{ key: string; reason: string }>;
  /** Keys of runs that failed, with the error. */
  failed: Array<{ key: string; reason: string }>;
  /** Set when `shouldStop` interrupted a run: its key and message. */
  stopped?: { key: string; message: string };
  /** Wall seconds of this call. */
  seconds: number;
}

function versionsOf(result: RunResult): Record<string, string> {
  const versions: Record<string, string> = {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  };
  const fromBackend = (result.backend as { versions?: Record<string, unknown> }).versions ?? {};
  for (const [k, v] of Object.entries(fromBackend)) versions[k] = String(v);
  return versions;
}

function serialisableBackend(result: RunResult): { name: string; [key: string]: unknown } {
  return JSON.parse(JSON.stringify(result.backend));
}

/**
 * History saved in a run's resumable state (so `history.json` survives a kill between writes);
 * `[]` when there is none or it is unreadable (resuming then reports what is wrong with it).
 */
async function stateHistory(dir: string): Promise<EpochRecord[]> {
  const meta = await readJsonFile<{ history?: EpochRecord[] }>(
    join(dir, RUN_FILES.state, "digitsum.json"),
  ).catch(() => undefined);
  return isObject(meta) && historyProblem(meta.history) === undefined ? meta.history! : [];
}

/** A rough time estimate for VGG runs, which train ~25x slower than the CNNs on a CPU. */
function vggWarning(config: SweepConfig, runs: number): string {
  const backend = config.backend === "auto" ? "wasm" : config.backend;
  const train = config.limit ?? Math.trunc(IMAGES_PER_FILE * 3 * config.trainFraction);
  const val = config.limit === null
    ? IMAGES_PER_FILE * 3 - train
    : Math.max(config.batchSize, Math.ceil(config.limit / 4));
  const test = config.testLimit ?? IMAGES_PER_FILE;
  const seconds = estimateVggSeconds(config.epochs * train, backend) +
    estimateVggSeconds(config.epochs * val + train + val + test, backend, { training: false });
  return `Note: ${runs} VGG run(s) to do, about ${formatDuration(seconds)} each on a 2-core CPU ` +
    `(${backend}); much less on a GPU backend. Leave them out with --models.`;
}

/**
 * The error a sweep stops with when its output folder cannot be written (full disk, read-only,
 * no permission): the original message, then what is safe and how to resume. Other errors are
 * returned unchanged.
 */
export function storageStopped(error: unknown, out: string): Error {
  if (!isStorageError(error)) return error as Error;
  const message = (error as Error).message;
  if (message.includes("The sweep stopped")) return error as Error;
  return new Error(
    `${message}\nThe sweep stopped: ${out} cannot be written. Finished runs and completed ` +
      "epochs are intact; free some space (or make the folder writable) and run the same " +
      "command to resume.",
    { cause: error },
  );
}

/** One-line summary of a finished run. */
export function formatRunLine(record: RunRecord): string {
  const name = `${record.title} seed ${record.seed}`;
  if (record.status !== "done") return `${record.status} ${name}: ${record.reason ?? ""}`;
  const acc = record.accuracy!;
  const epochs = record.history?.length ?? 0;
  const rate = record.history?.length
    ? record.history.reduce((n, r) => n + r.trainImagesPerSecond, 0) / record.history.length
    : NaN;
  return `done ${name}: val ${acc.val.accuracy.toFixed(2)}%, train ${
    acc.train.accuracy.toFixed(2)
  }%` + (acc.test ? `, test ${acc.test.accuracy.toFixed(2)}%` : "") +
    ` (${epochs} epoch${epochs === 1 ? "" : "s"} in ${formatDuration(record.seconds ?? NaN)}, ` +
    `${rate.toFixed(1)} train images/s on ${record.backend?.name ?? "?"})`;
}

/** What {@link planSweep} found: the grid, this call's part of it, and what is left to do. */
export interface SweepPlan {
  /** Every run of the grid. */
  grid: RunSpec[];
  /** The runs of this shard (and worker). */
  selected: RunSpec[];
  /** The configuration as stored in the output directory (grid = union). */
  stored: SweepConfig;
  /** Keys of selected runs already done. */
  alreadyDone: string[];
  /** Selected runs not done yet, in grid order. */
  todo: RunSpec[];
  /** Epochs left per run key of `todo` (0 for runs that will be skipped). */
  epochsLeft: Map<string, number>;
}

/**
 * Everything {@link runSweep} does before training: checks the configuration and the output
 * directory ({@link prepareOutDir}), reads every selected run's record, and removes what killed
 * processes left in the runs' folders (temp files, half-swapped checkpoints; a done run's state).
 *
 * @throws Error naming the file when a record or configuration in the folder is malformed.
 */
export async function planSweep(
  config: SweepConfig,
  options: Pick<SweepOptions, "shard" | "worker" | "keepState" | "log"> = {},
): Promise<SweepPlan> {
  validateConfig(config);
  const grid = sweepGrid(config);
  const selected = selectShard(selectShard(grid, options.shard), options.worker);
  const stored = await prepareOutDir(config, grid);
  const alreadyDone: string[] = [];
  const todo: RunSpec[] = [];
  for (const run of selected) {
    const record = await readRunRecord(run.dir);
    // This process owns its runs' folders (shards are disjoint): leftovers of a kill can go.
    await removeStaleTemps(run.dir);
    await recoverCheckpoint(join(run.dir, RUN_FILES.checkpoint));
    await recoverCheckpoint(join(run.dir, RUN_FILES.state));
    if (record?.status === "done") {
      alreadyDone.push(run.key);
      if (!(await exists(join(run.dir, RUN_FILES.checkpoint, "model.json")))) {
        options.log?.(
          `Note: ${run.key} is done but ${join(run.dir, RUN_FILES.checkpoint)} is missing; its ` +
            `results stand (delete ${join(run.dir, RUN_FILES.result)} to train it again)`,
        );
      }
      // A kill between result.json and the removal of state/ leaves state behind.
      if (!options.keepState) {
        await Deno.remove(join(run.dir, RUN_FILES.state), { recursive: true }).catch(() => {});
      }
    } else {
      todo.push(run);
    }
  }
  const epochsLeft = new Map<string, number>();
  for (const run of todo) {
    const done = (await stateHistory(run.dir)).length;
    epochsLeft.set(run.key, (await skipReason(run.model)) ? 0 : run.config.epochs - done);
  }
  return { grid, selected, stored, alreadyDone, todo, epochsLeft };
}

/**
 * The fingerprint of the data the sweep is about to train on (generating the data set first if
 * needed); throws when a finished run of `runs` was trained on other data, so that one output
 * folder never mixes data sets.
 */
async function sweepData(
  config: SweepConfig,
  runs: readonly RunSpec[],
  log: (line: string) => void,
): Promise<DataFingerprint> {
  await ensureDataset(config.dataDir, { log });
  const data = await dataFingerprint(config.dataDir);
  for (const run of runs) {
    const record = await readRunRecord(run.dir);
    if (record?.status === "done" && record.data?.id !== data.id) {
      throw new Error(
        `Cannot resume in ${config.out}: ${run.key} was trained on ` +
          `${record.data ? describeData(record.data) : "unrecorded data"}, but ${config.dataDir} ` +
          `now holds ${describeData(data)}; use another --out`,
      );
    }
  }
  return data;
}

/**
 * Run (or resume) every selected run of the grid that has not finished, in grid order.
 *
 * Never throws for a single run's failure: skipped (VGG weights missing) and failed runs are
 * recorded in their `result.json` and retried by the next call. Throws before training anything
 * when the output directory holds another configuration ({@link prepareOutDir}).
 *
 * @param config The sweep configuration (see {@link resolveConfig}).
 * @param options Shard, logging, progress and stop flag.
 */
export async function runSweep(config: SweepConfig, options: SweepOptions = {}): Promise<
  SweepSummary
> {
  const started = performance.now();
  const log = options.log ?? console.log;
  const progress = options.progress ?? true;
  const plan = await planSweep(config, { ...options, log });
  const { grid, selected, todo, epochsLeft } = plan;
  const data = todo.length > 0 ? await sweepData(config, selected, log) : undefined;
  const summary: SweepSummary = {
    config: plan.stored,
    selected,
    alreadyDone: plan.alreadyDone,
    finished: [],
    skipped: [],
    failed: [],
    seconds: 0,
  };
  const totalEpochs = [...epochsLeft.values()].reduce((a, b) => a + b, 0);
  const vggRuns = todo.filter((r) => r.model === "vgg-regressor" && epochsLeft.get(r.key)! > 0);
  if (vggRuns.length) log(vggWarning(config, vggRuns.length));
  log(
    `Grid: ${grid.length} runs (${config.models.length} models x ${config.seeds.length} seeds)` +
      (options.shard ? `, shard ${options.shard.index}/${options.shard.count}` : "") +
      (options.worker ? `, worker ${options.worker.index}/${options.worker.count}` : "") +
      `: ${selected.length} selected, ${summary.alreadyDone.length} already done, ` +
      `${todo.length} to run (${totalEpochs} epochs)`,
  );
  const gridBar = new ProgressBar(Math.max(1, totalEpochs), {
    label: "grid",
    mode: progress ? "lines" : "none",
  });
  let epochsDone = 0;
  const showGrid = (text: string) => {
    if (progress) log(gridBar.render(epochsDone, text));
  };

  for (const [i, run] of todo.entries()) {
    if (options.shouldStop?.()) {
      summary.stopped ??= { key: run.key, message: `Stopped before ${run.key}` };
      break;
    }
    const info = modelInfo(run.model);
    const name = `${info.title} seed ${run.seed}`;
    const logPath = join(run.dir, RUN_FILES.log);
    let logFile: Deno.FsFile;
    try {
      await ensureDir(run.dir);
      await writeJsonAtomic(join(run.dir, RUN_FILES.config), run.config);
      logFile = await Deno.open(logPath, { append: true, create: true });
    } catch (error) {
      throw storageStopped(error, config.out);
    }
    const encoder = new TextEncoder();
    const runLog = (line: string) => {
      log(line);
      const bytes = encoder.encode(line + "\n");
      for (let at = 0; at < bytes.length;) at += logFile.writeSync(bytes.subarray(at));
    };
    const writeRecord = async (
      record: Omit<
        RunRecord,
        "format" | "key" | "model" | "title" | "seed" | "config" | "data" | "finishedAt"
      >,
    ) => {
      const full: RunRecord = {
        format: RUN_RECORD_FORMAT,
        key: run.key,
        model: run.model,
        title: info.title,
        seed: run.seed,
        config: run.config,
        ...record,
        data: data!,
        finishedAt: new Date().toISOString(),
      };
      await writeJsonAtomic(join(run.dir, RUN_FILES.result), full);
      return full;
    };
    try {
      showGrid(`run ${i + 1}/${todo.length}: ${name}`);
      const reason = await skipReason(run.model);
      if (reason) {
        const record = await writeRecord({ status: "skipped", reason });
        summary.skipped.push({ key: run.key, reason });
        runLog(formatRunLine(record));
        continue;
      }
      let history = await stateHistory(run.dir);
      const runBar = new ProgressBar(run.config.epochs, { label: "run", mode: "none" });
      const result = await runExperiment(run.config, {
        checkpointDir: join(run.dir, RUN_FILES.checkpoint),
        stateDir: join(run.dir, RUN_FILES.state),
        log: runLog,
        progress,
        testLimit: config.testLimit ?? undefined,
        shouldStop: options.shouldStop,
        onEpochEnd: async (record) => {
          history = [...history.filter((r) => r.epoch < record.epoch), record];
          await writeJsonAtomic(join(run.dir, RUN_FILES.history), {
            model: run.model,
            seed: run.seed,
            epochs: run.config.epochs,
            history,
          });
          epochsDone += 1;
          if (progress) {
            log(`${runBar.render(record.epoch, name)} | ${gridBar.render(epochsDone)}`);
          }
        },
      });
      try {
        await writeJsonAtomic(join(run.dir, RUN_FILES.history), {
          model: run.model,
          seed: run.seed,
          epochs: run.config.epochs,
          history: result.history,
        });
        await writeJsonAtomic(join(run.dir, RUN_FILES.predictions), {
          split: "val",
          predictions: Array.from(result.valPredictions.predictions),
          labels: Array.from(result.valPredictions.labels),
        });
        const record = await writeRecord({
          status: "done",
          accuracy: result.accuracy,
          history: result.history,
          params: result.params,
          seconds: result.seconds,
          backend: serialisableBackend(result),
          versions: versionsOf(result),
        });
        if (!options.keepState) {
          await Deno.remove(join(run.dir, RUN_FILES.state), { recursive: true }).catch(() => {});
        }
        summary.finished.push(run.key);
        runLog(formatRunLine(record));
      } finally {
        result.model.dispose();
      }
    } catch (error) {
      // A full disk or an unwritable folder is not the run's fault: stop, record nothing.
      if (isStorageError(error)) throw storageStopped(error, config.out);
      try {
        if (error instanceof RunStoppedError) {
          summary.stopped = { key: run.key, message: error.message };
          runLog(error.message);
          break;
        }
        const message = (error as Error).message ?? String(error);
        if (/weights not found/i.test(message)) {
          const reason = `${message.split("\n")[0]} Get them with \`${VGG_WEIGHTS_COMMAND}\``;
          await writeRecord({ status: "skipped", reason });
          summary.skipped.push({ key: run.key, reason });
          runLog(`skipped ${name}: ${reason}`);
        } else {
          await writeRecord({ status: "failed", reason: message });
          summary.failed.push({ key: run.key, reason: message });
          runLog(`failed ${name}: ${message}`);
        }
      } catch (recording) {
        throw isStorageError(recording) ? storageStopped(recording, config.out) : recording;
      }
    } finally {
      logFile.close();
    }
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

/** Copy a directory tree (files and folders), leaving out top-level entries named in `skip`. */
async function copyTree(from: string, to: string, skip: readonly string[] = []): Promise<void> {
  await ensureDir(to);
  for await (const entry of Deno.readDir(from)) {
    if (skip.includes(entry.name)) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory) await copyTree(source, target);
    else if (entry.isFile) await Deno.copyFile(source, target);
  }
}

/** Whether two finished records describe the same result. */
function sameResult(a: RunRecord, b: RunRecord): string | undefined {
  const difference = configDifference(a.config, b.config);
  if (difference) return difference;
  if (a.status !== b.status) return `status ${a.status} vs ${b.status}`;
  if (JSON.stringify(a.accuracy) !== JSON.stringify(b.accuracy)) {
    return `accuracies differ (val ${a.accuracy?.val.accuracy} vs ${b.accuracy?.val.accuracy})`;
  }
  return undefined;
}

/**
 * Combine the outputs of several sweeps (e.g. shards) into `out`: run directories are copied
 * (without `state/`), `out/config.json` gets the union grid. Refuses, before copying anything,
 * when the inputs have different training setups or when the same run finished with different
 * results in two places (including `out` itself). Finished runs win over skipped or failed ones.
 *
 * @param inputs Sweep output directories.
 * @param out Target directory (may already hold a sweep with the same setup).
 * @returns The merged configuration.
 */
export async function mergeSweeps(
  inputs: readonly string[],
  out: string,
  options: { log?: (line: string) => void } = {},
): Promise<SweepConfig> {
  const log = options.log ?? console.log;
  if (inputs.length === 0) throw new Error("--merge needs at least one sweep directory");
  const configs: Array<{ dir: string; config: SweepConfig }> = [];
  for (const dir of inputs) {
    const config = await readSweepConfig(join(dir, "config.json"));
    if (!config) throw new Error(`Cannot merge ${dir}: ${join(dir, "config.json")} is missing`);
    configs.push({ dir, config });
  }
  const existing = await readSweepConfig(join(out, "config.json"));
  const all = existing ? [{ dir: out, config: existing }, ...configs] : configs;
  for (const { dir, config } of all.slice(1)) {
    const difference = setupDifference(all[0].config, config);
    if (difference) {
      throw new Error(
        `Cannot merge ${dir} with ${all[0].dir}: different training setups (${difference})`,
      );
    }
  }
  // Pick one record per run key; finished beats skipped/failed; two different finished refuse.
  const chosen = new Map<string, { dir: string; record: RunRecord }>();
  const conflicts: string[] = [];
  for (const { dir } of all) {
    const runsDir = join(dir, "runs");
    if (!(await exists(runsDir))) continue;
    const names: string[] = [];
    for await (const entry of Deno.readDir(runsDir)) if (entry.isDirectory) names.push(entry.name);
    for (const name of names.sort()) {
      const record = await readRunRecord(join(runsDir, name));
      if (!record) continue;
      const previous = chosen.get(name);
      if (!previous || (previous.record.status !== "done" && record.status === "done")) {
        chosen.set(name, { dir: join(runsDir, name), record });
      } else if (previous.record.status === "done" && record.status === "done") {
        const difference = sameResult(previous.record, record);
        if (difference) {
          conflicts.push(`${name}: ${previous.dir} vs ${join(runsDir, name)} (${difference})`);
        }
      }
    }
  }
  if (conflicts.length) {
    throw new Error(
      `Cannot merge: the same run finished with different results:\n  ${conflicts.join("\n  ")}`,
    );
  }
  assertSameData(
    [...chosen.values()].map((c) => c.record).filter((r) => r.status === "done"),
    `the runs of ${inputs.join(", ")}`,
  );
  let merged: SweepConfig = { ...all[0].config, out };
  for (const { config } of all.slice(1)) merged = { ...merged, ...unionGrid(merged, config) };
  await ensureDir(join(out, "runs"));
  let copied = 0;
  for (const [name, { dir }] of chosen) {
    const target = join(out, "runs", name);
    if (target === dir) continue;
    const tmp = `${target}.merge-${Deno.pid}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await copyTree(dir, tmp, [RUN_FILES.state]);
    await Deno.remove(target, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, target);
    copied += 1;
  }
  await writeJsonAtomic(join(out, "config.json"), merged);
  log(`Merged ${inputs.length} sweep(s) into ${out}: ${chosen.size} runs (${copied} copied)`);
  return merged;
}

/** Write the resolved configuration as readable lines (for the start of a sweep). */
export function formatConfig(config: SweepConfig, preset?: string): string {
  const lines = [
    `Sweep configuration${preset ? ` (preset ${preset}: ${PRESETS[preset].reason})` : ""}:`,
  ];
  for (const [key, value] of Object.entries(config)) {
    lines.push(`  ${key.padEnd(14)} ${JSON.stringify(value)}`);
  }
  return lines.join("\n");
}
