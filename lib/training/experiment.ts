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
import { getLoaders, loadTestLoader } from "../data/loader.ts";
import { exists } from "../io/fsutil.ts";
import { type ModelInfo } from "../models/registry.ts";
import { type BatchProgress, formatDuration, ProgressBar } from "../runtime/progress.ts";
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
} from "./train.ts";
import { firstImages } from "../data/batch.ts";
import { buildModel, modelInfo } from "../models/mod.ts";

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

/** Accuracy summary of one split (no per-image arrays). */
export interface SplitAccuracy {
  correct: number;
  total: number;
  accuracy: number;
}

/** What a finished run leaves. */
export interface RunResult {
  config: RunConfig;
  info: ModelInfo;
  history: EpochRecord[];
  /** Overall accuracy per split: `train`, `val` and the held-out `test`. */
  accuracy: { train: SplitAccuracy; val: SplitAccuracy; test?: SplitAccuracy };
  backend: BackendInfo;
  params: number;
  /** Wall seconds of the whole run, epochs done before a resume included. */
  seconds: number;
  model: tf.LayersModel;
  /** Predictions on the validation split (for confusion plots and error analysis). */
  valPredictions: AccuracyResult;
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
  /** Settings for the recipe's `prepare` stage (e.g. SumNet's pretraining `{ epochs: 2 }`). */
  prepareOptions?: Readonly<Record<string, unknown>>;
}

/** Thrown when `shouldStop` ended a run before its last epoch. */
export class RunStoppedError extends Error {
  override name = "RunStoppedError";
}

/**
 * A value read from a file, for a message: JSON cut to 60 characters, `(missing)`, or for a
 * value too deeply nested to print, `(nested too deep)`.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "(missing)";
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    return "(nested too deep)"; // JSON.stringify recurses: a 100,000-deep list overflows it
  }
  return text.length > 60 ? text.slice(0, 60) + "..." : text;
}

/** Whether two values have the same JSON (a value too deeply nested to print differs). */
function sameJson(a: unknown, b: unknown): boolean {
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
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

/** Train and evaluate one model as the study did (resuming from `stateDir` when possible). */
export async function runExperiment(
  config: RunConfig,
  options: RunOptions = {},
): Promise<RunResult> {
  const log = options.log ?? console.log;
  const info = modelInfo(config.model);
  const backend = await initBackend(config.backend as never, { log });
  const started = performance.now();

  seedEverything(config.seed);
  const { train, val } = await getLoaders(config.trainFraction, config.batchSize, {
    seed: config.seed,
    dataDir: config.dataDir,
    limit: config.limit,
    shuffleEachEpoch: info.recipe?.shuffleEachEpoch,
  });
  let model = await buildModel(config.model, { weightsPath: Deno.env.get("DIGITSUM_VGG_WEIGHTS") });
  if (info.estimateSeconds) {
    const evalImages = train.size + val.size +
      (options.test === false ? 0 : options.testLimit ?? 10_000);
    const seconds = info.estimateSeconds({
      trainImages: config.epochs * train.size,
      evalImages: config.epochs * val.size + evalImages,
      backend: backend.name,
    });
    log(
      `Estimated time for ${info.title} on ${backend.name}: about ${formatDuration(seconds)} ` +
        `(${config.epochs} epoch(s) of ${train.size} images); a GPU backend is much faster`,
    );
  }
  let history: EpochRecord[] = [];
  let optimizer: TorchAdam | undefined;
  let previousSeconds = 0;

  // A kill in the middle of saving the state may leave it half swapped: finish the swap first.
  if (
    options.stateDir && await recoverCheckpoint(options.stateDir) &&
    await exists(join(options.stateDir, "model.json"))
  ) {
    const saved = await loadCheckpoint(options.stateDir);
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
      throw new Error(`Cannot resume from ${options.stateDir}: ${unusable}`);
    }
    const difference = configDifference(savedConfig!, config);
    if (difference) {
      throw new Error(
        `Cannot resume from ${options.stateDir}: it belongs to another configuration (${difference})`,
      );
    }
    model.dispose();
    model = saved.model;
    history = (saved.meta.history as EpochRecord[]) ?? [];
    previousSeconds = (saved.meta.seconds as number) ?? 0;
    optimizer = new TorchAdam(trainableVariables(model), { learningRate: config.learningRate });
    if (saved.optimizerState) optimizer.setState(saved.optimizerState);
    if (saved.meta.rng) restoreRngState(saved.meta.rng as RngState);
    log(
      `Resuming ${info.title} seed ${config.seed} after epoch ${history.length}/${config.epochs}`,
    );
  }

  const saveState = async (opt: TorchAdam, done: EpochRecord[]) => {
    if (!options.stateDir) return;
    await saveCheckpoint(options.stateDir, model, {
      kind: config.model,
      config,
      history: done,
      rng: rngState(),
      seconds: previousSeconds + (performance.now() - started) / 1000,
      backend: backend.name,
    }, { optimizer: opt });
  };

  let bar: ProgressBar | undefined;
  const showProgress = async (p: BatchProgress) => {
    if (options.progress === false) return;
    bar ??= new ProgressBar(p.numBatches, { label: `epoch ${p.epoch}/${p.epochs}` });
    await bar.update(p.batch, `loss ${p.loss.toFixed(3)}`);
    if (p.batch === p.numBatches) {
      await bar.finish("");
      bar = undefined;
    }
  };
  const recipe = info.recipe;
  if (history.length === 0 && recipe?.prepare) {
    await recipe.prepare(model, {
      seed: config.seed,
      limit: config.limit,
      val,
      log,
      onBatchEnd: showProgress,
      stopAfterBatch: options.stopAfterBatch,
      options: options.prepareOptions,
    });
    if (await options.stopAfterBatch?.()) {
      throw new RunStoppedError(
        `${info.title} seed ${config.seed} stopped in its recipe's prepare stage, before epoch 1`,
      );
    }
  }
  const schedule = recipe?.schedule;
  const valProbe = recipe?.validationImages && !config.limit
    ? firstImages(val, recipe.validationImages)
    : undefined;
  const result = await trainModel(model, { train, val }, {
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
    optimizer,
    startEpoch: history.length,
    history,
    log,
    shouldStop: options.shouldStop,
    stopAfterBatch: options.stopAfterBatch,
    onBatchEnd: showProgress,
    onEpochEnd: async (record, opt) => {
      // `history` holds only the epochs before this call: grow it, or a state saved after the
      // second epoch of one process would record fewer epochs than its weights have seen.
      history = [...history.slice(0, record.epoch - 1), record];
      await saveState(opt, history);
      await options.onEpochEnd?.(record);
    },
  });
  history = result.history;
  if (result.stopped) {
    const where = result.unfinished
      ? `during epoch ${result.unfinished.epoch}/${config.epochs} (after batch ` +
        `${result.unfinished.batches}/${train.numBatches})`
      : `after epoch ${history.length}/${config.epochs}`;
    throw new RunStoppedError(
      `${info.title} seed ${config.seed} stopped ${where}` +
        (options.stateDir
          ? `; run again to resume after epoch ${history.length} from ${options.stateDir}`
          : ""),
    );
  }

  const valResult = await evaluateAccuracy(model, val, info.task);
  const trainScored = recipe?.trainAccuracyImages
    ? firstImages(train, recipe.trainAccuracyImages)
    : train;
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
  const seconds = previousSeconds + (performance.now() - started) / 1000;
  if (options.checkpointDir) {
    await saveCheckpoint(options.checkpointDir, model, {
      kind: config.model,
      config,
      history,
      accuracy: { train: summary(trainResult), val: summary(valResult), test },
      seconds,
      backend: backend.name,
      versions: backend.versions,
    });
  }
  return {
    config,
    info,
    history,
    accuracy: { train: summary(trainResult), val: summary(valResult), test },
    backend,
    params: model.countParams(),
    seconds,
    model,
    valPredictions: valResult,
  };
}
