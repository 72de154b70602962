/**
 * One training run of the study, end to end: seed, data, model, train, evaluate every split,
 * checkpoint. `deno task train`, the sweep and the notebooks all run models through
 * {@link runExperiment}, so a number printed by one is the number the others would print.
 *
 * With a `stateDir`, the run is resumable: after every epoch the model, optimiser moments,
 * random-generator state and history are checkpointed atomically, and a later call with the same
 * configuration continues from the last completed epoch to the same final numbers.
 */
import type * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { type BackendInfo, initBackend } from "../runtime/backend.ts";
import { loadCheckpoint, recoverCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  EPOCHS,
  LEARNING_RATE,
  TRAIN_FRACTION,
} from "../constants.ts";
import { getLoaders, type Loader, loadTestLoader, type SplitLoaders } from "../data/loader.ts";
import { TEST_SET_SIZE } from "../data/generate.ts";
import { exists } from "../io/fsutil.ts";
import type { BuildOptions, ModelInfo } from "../models/registry.ts";
import { type BatchProgress, epochProgress, formatDuration } from "../runtime/progress.ts";
import {
  isRngState,
  restoreRngState,
  type RngState,
  rngState,
  seedEverything,
} from "../runtime/seed.ts";
import {
  type AccuracyResult,
  type EpochRecord,
  evaluateAccuracy,
  formatOverallLine,
  TorchAdam,
  trainableVariables,
  trainModel,
  type UnfinishedEpoch,
} from "./train.ts";
import { firstImages } from "../data/batch.ts";
import { buildModel, modelInfo } from "../models/mod.ts";
import { describeValue, isObject, sameJson } from "../io/json.ts";
/** Everything that defines a run; two runs with equal configs give equal results. */
export interface RunConfig {
  /** Model kind (`cnn-regressor`, `cnn-classifier`, `vgg-regressor`, ...). */
  model: string;
  seed: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  trainFraction: number;
  /** Cap on training images (validation gets a quarter as many); `undefined` = all. */
  limit?: number;
  /** Backend asked for (`auto`, `wasm`, ...). */
  backend: string;
  /** Directory of the `.npy` files. */
  dataDir: string;
}

/** The study's configuration for one model and seed (a model's own recipe sets its defaults). */
export function studyConfig(model: string, overrides: Partial<RunConfig> = {}): RunConfig {
  let recipe: ModelInfo["recipe"];
  try {
    recipe = modelInfo(model).recipe;
  } catch {
    recipe = undefined;
  }
  return {
    model,
    seed: 42,
    epochs: recipe?.epochs ?? EPOCHS,
    batchSize: BATCH_SIZE,
    learningRate: recipe?.learningRate ?? LEARNING_RATE,
    trainFraction: TRAIN_FRACTION,
    limit: undefined,
    backend: Deno.env.get("DIGITSUM_BACKEND") ?? "auto",
    dataDir: DEFAULT_DATA_DIR,
    ...overrides,
  };
}

/** Overall accuracy of one split: correct / total images, in percent (no per-image arrays). */
export interface SplitAccuracy {
  correct: number;
  total: number;
  accuracy: number;
}

/** Overall accuracy per split: `train`, `val` and (when evaluated) the held-out `test`. */
export interface RunAccuracy {
  train: SplitAccuracy;
  val: SplitAccuracy;
  test?: SplitAccuracy;
}

/** What a finished run leaves. */
export interface RunResult {
  config: RunConfig;
  info: ModelInfo;
  history: EpochRecord[];
  /** Overall accuracy per split: `train`, `val` and the held-out `test`. */
  accuracy: RunAccuracy;
  backend: BackendInfo;
  /** Runtime and library versions (Deno, V8, TypeScript and the backend's). */
  versions: Record<string, string>;
  params: number;
  /** Wall seconds of the whole run, epochs done before a resume included. */
  seconds: number;
  model: tf.LayersModel;
  /** Predictions on the validation split (for confusion plots and error analysis). */
  valPredictions: AccuracyResult;
  /** What the recipe's prepare stage did (its record; also in the checkpoint as `prepared`). */
  prepared?: Readonly<Record<string, unknown>>;
}

/** Options of {@link runExperiment}. */
export interface RunOptions {
  /** Where the final checkpoint goes (e.g. `trained_models/cnnregressor_42`); none if omitted. */
  checkpointDir?: string;
  /** Directory for per-epoch resumable state; no resume if omitted. */
  stateDir?: string;
  /** Line printer (default `console.log`). */
  log?: (line: string) => void;
  /** Show a per-epoch progress bar (default true). */
  progress?: boolean;
  /** Evaluate on the held-out test split too (default true). */
  test?: boolean;
  /** Evaluate only the first N held-out test images (default: all 10,000). */
  testLimit?: number;
  /** Called after each epoch (after the state is saved). */
  onEpochEnd?: (record: EpochRecord) => void | Promise<void>;
  /** Stop after the current epoch when this returns true (the state stays resumable). */
  shouldStop?: () => boolean;
  /**
   * Awaited after every training batch of both stages; once it gives true (it should keep
   * giving true) the run stops part-way and throws {@link RunStoppedError}. With a `stateDir`,
   * a later call resumes after the last completed epoch.
   */
  stopAfterBatch?: () => boolean | Promise<boolean>;
  /**
   * Continue a run that this process stopped ({@link RunStoppedError.held}) from the batch after
   * its last one; it ends with the numbers of an uninterrupted run. Takes precedence over
   * `stateDir`. Its config must be this run's.
   */
  resume?: HeldRun;
  /** How to build the model (e.g. the VGG weights' path); the defaults when omitted. */
  build?: BuildOptions;
  /** Settings for the recipe's `prepare` stage (e.g. SumNet's pretraining `{ epochs: 2 }`). */
  prepareOptions?: Readonly<Record<string, unknown>>;
}

/**
 * A run stopped part-way by `stopAfterBatch`, held in memory (its model not disposed) so that
 * the same process can continue it exactly: pass it back as {@link RunOptions.resume}.
 */
export interface HeldRun {
  config: RunConfig;
  model: tf.LayersModel;
  optimizer: TorchAdam;
  history: EpochRecord[];
  /** Where in its epoch it stopped, when it stopped within one. */
  unfinished?: UnfinishedEpoch;
  /** The random generator's state when it stopped (none when it was never seeded). */
  rng?: RngState;
  /** Wall seconds so far. */
  seconds: number;
  /** What the recipe's prepare stage did, when it has one. */
  prepared?: Readonly<Record<string, unknown>>;
}

/** Thrown when `shouldStop` or `stopAfterBatch` ended a run before its last epoch. */
export class RunStoppedError extends Error {
  override name = "RunStoppedError";
  /** Where it stopped, e.g. `during epoch 1/1 (after batch 3/8)`. */
  readonly where: string;
  /** The stopped run, when it stopped during its epochs (to pass back as `resume`). */
  readonly held?: HeldRun;

  constructor(message: string, options: { where?: string; held?: HeldRun } = {}) {
    super(message);
    this.where = options.where ?? "";
    this.held = options.held;
  }
}

/** Same-config check for resuming; returns a reason when they differ. */
export function configDifference(a: RunConfig, b: RunConfig): string | undefined {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof RunConfig>;
  for (const key of keys) {
    if (key === "backend") continue;
    if (!sameJson(a[key], b[key])) {
      return `${key} differs: ${describeValue(a[key])} vs ${describeValue(b[key])}`;
    }
  }
  return undefined;
}

function summary(result: AccuracyResult): SplitAccuracy {
  return { correct: result.correct, total: result.total, accuracy: result.accuracy };
}

/** Runtime and library versions of a run: Deno's, then the backend's. */
function runVersions(backend: BackendInfo): Record<string, string> {
  const versions: Record<string, string> = {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  };
  for (const [k, v] of Object.entries(backend.versions ?? {})) versions[k] = String(v);
  return versions;
}

/** What a run has when its epochs start: fresh, or resumed from its state. */
interface RunStart {
  model: tf.LayersModel;
  history: EpochRecord[];
  optimizer?: TorchAdam;
  /** Where in its epoch a held run stopped. */
  unfinished?: UnfinishedEpoch;
  /** Wall seconds of the epochs before a resume. */
  previousSeconds: number;
  /** What the recipe's prepare stage did (its record), once it ran or from the saved state. */
  prepared?: Readonly<Record<string, unknown>>;
}

/**
 * The run's saved state in `stateDir`, when there is one (the fresh `model` is then disposed),
 * else the fresh start. A kill in the middle of saving the state may leave it half swapped:
 * the swap is finished first.
 *
 * @throws Error `Cannot resume from <dir>: ...` when the state is unusable or of another config.
 */
async function resumeOrStart(
  model: tf.LayersModel,
  config: RunConfig,
  stateDir: string | undefined,
  log: (line: string) => void,
): Promise<RunStart> {
  const fresh = { model, history: [], previousSeconds: 0 };
  if (!stateDir || !await recoverCheckpoint(stateDir)) return fresh;
  if (!await exists(join(stateDir, "model.json"))) return fresh;
  const saved = await loadCheckpoint(stateDir);
  const savedConfig = saved.meta.config as RunConfig | undefined;
  const unusable = !savedConfig
    ? "digitsum.json has no 'config'"
    : saved.meta.rng !== undefined && !isRngState(saved.meta.rng)
    ? "digitsum.json has an invalid 'rng' state"
    : !saved.optimizerState
    ? "optimizer.json is missing"
    : undefined;
  if (unusable) {
    saved.model.dispose();
    throw new Error(`Cannot resume from ${stateDir}: ${unusable}`);
  }
  const difference = configDifference(savedConfig!, config);
  if (difference) {
    throw new Error(
      `Cannot resume from ${stateDir}: it belongs to another configuration (${difference})`,
    );
  }
  model.dispose();
  const history = (saved.meta.history as EpochRecord[]) ?? [];
  const optimizer = new TorchAdam(trainableVariables(saved.model), {
    learningRate: config.learningRate,
  });
  optimizer.setState(saved.optimizerState!);
  if (saved.meta.rng) restoreRngState(saved.meta.rng as RngState);
  log(
    `Resuming ${modelInfo(config.model).title} seed ${config.seed} after epoch ` +
      `${history.length}/${config.epochs}`,
  );
  return {
    model: saved.model,
    history,
    optimizer,
    previousSeconds: (saved.meta.seconds as number) ?? 0,
    ...(isObject(saved.meta.prepared) ? { prepared: saved.meta.prepared } : {}),
  };
}

/** Continue a run held in memory (the fresh `model` is disposed). */
function continueHeld(model: tf.LayersModel, held: HeldRun, setup: RunSetup): RunStart {
  const { config } = held;
  model.dispose();
  if (held.rng) restoreRngState(held.rng);
  const next = held.unfinished
    ? `epoch ${held.unfinished.epoch}/${config.epochs}, batch ${held.unfinished.batches + 1}/` +
      `${setup.train.numBatches}`
    : `epoch ${held.history.length + 1}/${config.epochs}`;
  setup.log(
    `Resuming ${setup.info.title} seed ${config.seed} at ${next} ` +
      `(${held.history.length} epoch(s) finished before it stopped)`,
  );
  return {
    model: held.model,
    history: held.history,
    optimizer: held.optimizer,
    unfinished: held.unfinished,
    previousSeconds: held.seconds,
    ...(held.prepared ? { prepared: held.prepared } : {}),
  };
}

/** The loaders of a run and what the rest of it needs to know. */
interface RunSetup {
  info: ModelInfo;
  backend: BackendInfo;
  train: Loader;
  val: Loader;
  log: (line: string) => void;
  /** `performance.now()` when the run started (after the backend). */
  started: number;
}

/** The per-batch progress callback of a run: bars, or nothing with `progress: false`. */
function batchProgress(options: RunOptions): (progress: BatchProgress) => Promise<void> {
  return options.progress === false ? () => Promise.resolve() : epochProgress();
}

/** Print the registry's time estimate of a slow model (VGG) before its run starts. */
function logEstimate(setup: RunSetup, config: RunConfig, options: RunOptions): void {
  const { info, train, val, backend } = setup;
  if (!info.estimateSeconds) return;
  const evalImages = train.size + val.size +
    (options.test === false ? 0 : options.testLimit ?? TEST_SET_SIZE);
  const seconds = info.estimateSeconds({
    trainImages: config.epochs * train.size,
    evalImages: config.epochs * val.size + evalImages,
    backend: backend.name,
  });
  setup.log(
    `Estimated time for ${info.title} on ${backend.name}: about ${formatDuration(seconds)} ` +
      `(${config.epochs} epoch(s) of ${train.size} images); a GPU backend is much faster`,
  );
}

/**
 * The prepare stage's settings as a checkpoint records them (they change what was trained, e.g.
 * `holdOutValidationDigits`): values as they are, a digit source by its name and count.
 */
function recordedPrepareOptions(
  options: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).map(([key, value]) => {
      const source = value as { images?: unknown; count?: unknown; name?: unknown } | null;
      return source?.images instanceof Uint8Array
        ? [key, `${source.name ?? "digits"} (${source.count} digits)`]
        : [key, value];
    }),
  );
}

/** The recipe's prepare stage (e.g. SumNet's MNIST pretraining), on a fresh run only. */
async function prepareStage(
  start: RunStart,
  setup: RunSetup,
  config: RunConfig,
  options: RunOptions,
): Promise<void> {
  const prepare = setup.info.recipe?.prepare;
  if (start.history.length > 0 || !prepare) return;
  const prepared = await prepare(start.model, {
    seed: config.seed,
    limit: config.limit,
    dataDir: config.dataDir,
    val: setup.val,
    log: setup.log,
    onBatchEnd: batchProgress(options),
    stopAfterBatch: options.stopAfterBatch,
    options: options.prepareOptions,
  });
  if (prepared) start.prepared = prepared;
  if (await options.stopAfterBatch?.()) {
    const where = "in its recipe's prepare stage, before epoch 1";
    throw new RunStoppedError(`${setup.info.title} seed ${config.seed} stopped ${where}`, {
      where,
    });
  }
}

/**
 * The epochs (`trainModel` with the recipe's schedule, augmentation and validation probe), the
 * state saved after each; returns the full history.
 *
 * @throws RunStoppedError when `shouldStop` or `stopAfterBatch` ended it early.
 */
async function trainStage(
  start: RunStart,
  setup: RunSetup,
  config: RunConfig,
  options: RunOptions,
): Promise<EpochRecord[]> {
  const { info, train, val, backend } = setup;
  const recipe = info.recipe;
  const schedule = recipe?.schedule;
  const valProbe = recipe?.validationImages && !config.limit
    ? firstImages(val, recipe.validationImages)
    : undefined;
  let history = start.history;
  const result = await trainModel(start.model, { train, val }, {
    validate: valProbe &&
      (async (m) => (await evaluateAccuracy(m, valProbe, info.task)).batchMeanAccuracy),
    augment: recipe?.augment,
    task: info.task,
    epochs: config.epochs,
    learningRate: config.learningRate,
    learningRateAt: schedule && ((epoch, batch) =>
      schedule({
        epoch,
        batch,
        epochs: config.epochs,
        numBatches: train.numBatches,
        learningRate: config.learningRate,
      })),
    optimizer: start.optimizer,
    startEpoch: start.history.length,
    history: start.history,
    resume: start.unfinished,
    log: setup.log,
    shouldStop: options.shouldStop,
    stopAfterBatch: options.stopAfterBatch,
    onBatchEnd: batchProgress(options),
    onEpochEnd: async (record, optimizer) => {
      // `history` holds only the epochs before this call: grow it, or a state saved after the
      // second epoch of one process would record fewer epochs than its weights have seen.
      history = [...history.slice(0, record.epoch - 1), record];
      if (options.stateDir) {
        await saveCheckpoint(options.stateDir, start.model, {
          kind: config.model,
          config,
          history,
          rng: rngState(),
          seconds: start.previousSeconds + (performance.now() - setup.started) / 1000,
          backend: backend.name,
          ...(start.prepared ? { prepared: start.prepared } : {}),
        }, { optimizer });
      }
      await options.onEpochEnd?.(record);
    },
  });
  if (result.stopped) {
    const done = result.history.length;
    const where = result.unfinished
      ? `during epoch ${result.unfinished.epoch}/${config.epochs} (after batch ` +
        `${result.unfinished.batches}/${train.numBatches})`
      : `after epoch ${done}/${config.epochs}`;
    const held: HeldRun = {
      config,
      model: start.model,
      optimizer: result.optimizer,
      history: result.history,
      unfinished: result.unfinished,
      rng: rngState(),
      seconds: start.previousSeconds + (performance.now() - setup.started) / 1000,
      ...(start.prepared ? { prepared: start.prepared } : {}),
    };
    throw new RunStoppedError(
      `${info.title} seed ${config.seed} stopped ${where}` +
        (options.stateDir
          ? `; run again to resume after epoch ${done} from ${options.stateDir}`
          : ""),
      { where, held },
    );
  }
  return result.history;
}

/** A run's training and validation loaders, as `runExperiment` makes them. */
async function runLoaders(config: RunConfig, info: ModelInfo): Promise<SplitLoaders> {
  return await getLoaders(config.trainFraction, config.batchSize, {
    seed: config.seed,
    dataDir: config.dataDir,
    limit: config.limit,
    shuffleEachEpoch: info.recipe?.shuffleEachEpoch,
  });
}

/** Overall accuracy on every split, one line each in the study's format. */
async function evaluateSplits(
  model: tf.LayersModel,
  setup: Pick<RunSetup, "info" | "train" | "val" | "log">,
  config: RunConfig,
  options: Pick<RunOptions, "test" | "testLimit">,
): Promise<{ accuracy: RunAccuracy; valResult: AccuracyResult }> {
  const { info, train, val, log } = setup;
  const valResult = await evaluateAccuracy(model, val, info.task);
  const trainImages = info.recipe?.trainAccuracyImages;
  const trainScored = trainImages ? firstImages(train, trainImages) : train;
  const trainResult = await evaluateAccuracy(model, trainScored, info.task);
  log(formatOverallLine(info.noun, "Validation", valResult.accuracy));
  log(formatOverallLine(
    info.noun,
    trainScored === train ? "Training" : `Training (first ${trainResult.total})`,
    trainResult.accuracy,
  ));
  let test: SplitAccuracy | undefined;
  if (options.test !== false) {
    const testLoader = await loadTestLoader(config.batchSize, {
      dataDir: config.dataDir,
      limit: options.testLimit,
    });
    test = summary(await evaluateAccuracy(model, testLoader, info.task));
    const label = options.testLimit === undefined
      ? "Held-out Test"
      : `Held-out Test (first ${test.total})`;
    log(formatOverallLine(info.noun, label, test.accuracy));
  }
  return { accuracy: { train: summary(trainResult), val: summary(valResult), test }, valResult };
}

/**
 * Scores a trained model on the splits of `config` exactly as {@linkcode runExperiment} does at
 * the end of a run (validation, training or the recipe's first images of it, held-out test), with
 * the same log lines; e.g. to score a checkpoint again after changing how it infers.
 *
 * @param model a model of kind `config.model`
 * @param config the run's config (a checkpoint's `digitsum.json` records it)
 * @param options log (default console.log), test split scored or not, test image cap
 * @returns the accuracies, as a checkpoint records them
 */
export async function scoreSplits(
  model: tf.LayersModel,
  config: RunConfig,
  options: { log?: (line: string) => void; test?: boolean; testLimit?: number } = {},
): Promise<RunAccuracy> {
  const info = modelInfo(config.model);
  const { train, val } = await runLoaders(config, info);
  const log = options.log ?? console.log;
  return (await evaluateSplits(model, { info, train, val, log }, config, options)).accuracy;
}

/**
 * Train and evaluate one model as the study did (resuming from `stateDir` when possible): the
 * one way digitsum runs a model, used by `deno task train`, the sweep and the notebooks.
 */
export async function runExperiment(
  config: RunConfig,
  options: RunOptions = {},
): Promise<RunResult> {
  const log = options.log ?? console.log;
  const info = modelInfo(config.model);
  const backend = await initBackend(config.backend as never, { log });
  const started = performance.now();
  seedEverything(config.seed);
  const { train, val } = await runLoaders(config, info);
  const built = await buildModel(config.model, options.build);
  const setup: RunSetup = { info, backend, train, val, log, started };
  logEstimate(setup, config, options);
  const difference = options.resume && configDifference(options.resume.config, config);
  if (difference) throw new Error(`Cannot resume: the held run has another config (${difference})`);
  const start = options.resume
    ? continueHeld(built, options.resume, setup)
    : await resumeOrStart(built, config, options.stateDir, log);
  const model = start.model;
  await prepareStage(start, setup, config, options);
  const history = await trainStage(start, setup, config, options);
  const { accuracy, valResult } = await evaluateSplits(model, setup, config, options);
  const seconds = start.previousSeconds + (performance.now() - started) / 1000;
  if (options.checkpointDir) {
    await saveCheckpoint(options.checkpointDir, model, {
      kind: config.model,
      config,
      history,
      accuracy,
      seconds,
      backend: backend.name,
      versions: backend.versions,
      ...(options.prepareOptions
        ? { prepareOptions: recordedPrepareOptions(options.prepareOptions) }
        : {}),
      ...(start.prepared ? { prepared: start.prepared } : {}),
    });
  }
  return {
    config,
    info,
    history,
    accuracy,
    backend,
    versions: runVersions(backend),
    params: model.countParams(),
    seconds,
    model,
    valPredictions: valResult,
    ...(start.prepared ? { prepared: start.prepared } : {}),
  };
}
