/**
 * What a sweep trains: its configuration (the grid of models x seeds and the training setup they
 * share), the study's defaults and presets, shards, and the grid of runs with their folders.
 *
 * @module
 */
import { join } from "node:path";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  EPOCHS,
  LEARNING_RATE,
  STUDY_SEEDS,
  TRAIN_FRACTION,
} from "../constants.ts";
import { describeValue, isObject, readJsonFile } from "../io/json.ts";
import { modelInfo, modelKinds, studyModelKinds } from "../models/mod.ts";
import { RUN_FILES } from "../results/record.ts";
import { parseBackendName } from "../runtime/backend.ts";
import { type RunConfig, studyConfig } from "../training/experiment.ts";

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
  // The study's three networks, in the column order of its tables (the registry's study models).
  models: studyModelKinds(),
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
  // `$DIGITSUM_BACKEND`, else the fastest backend that can train here (lib/runtime/backend.ts).
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
export async function readRunConfig(dir: string): Promise<RunConfig | undefined> {
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
export function unionGrid(a: SweepConfig, b: SweepConfig): Pick<SweepConfig, "models" | "seeds"> {
  const kinds = modelKinds();
  const models = [...new Set([...a.models, ...b.models])].sort((x, y) =>
    (kinds.indexOf(x) + 1 || Infinity) - (kinds.indexOf(y) + 1 || Infinity)
  );
  const seeds = [...new Set([...a.seeds, ...b.seeds])].sort((x, y) => x - y);
  return { models, seeds };
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
