/**
 * Training from a notebook cell: {@link runInNotebook} runs `runExperiment`, the one way
 * `deno task train` and the sweep run a model, so a notebook's numbers are the CLI's; Kernel >
 * Interrupt stops it after the current batch and running the cell again resumes. Also the
 * study's "Overall Accuracy" cell for a model loaded from a checkpoint.
 *
 * @module
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { saveCheckpoint } from "../training/checkpoint.ts";
import { type Loader, loadTestLoader } from "../data/loader.ts";
import {
  configDifference,
  type RunConfig,
  runExperiment,
  type RunOptions,
  type RunResult,
  RunStoppedError,
  type SplitAccuracy,
} from "../training/experiment.ts";
import { type BatchProgress, ProgressBar } from "../runtime/progress.ts";
import { restoreRngState, type RngState, rngState } from "../runtime/seed.ts";
import {
  type EpochRecord,
  evaluateAccuracy,
  formatOverallLine,
  type TorchAdam,
  trainModel,
  type UnfinishedEpoch,
} from "../training/train.ts";
import { type BatchSource } from "../data/batch.ts";
import { modelInfo } from "../models/mod.ts";
import {
  installCellEndHook,
  interruptRequested,
  interrupts,
  KernelInterrupt,
  listenForInterrupts,
  settle,
} from "./kernel.ts";
import {
  displayPath,
  notebookRunConfig,
  type NotebookSettings,
  QUICK_TEST_LIMIT,
  repoPath,
} from "./settings.ts";
import { type AccuracyRecord } from "./results.ts";

/**
 * A `trainModel` `onBatchEnd` callback drawing one progress bar per epoch: a live-updating line
 * in a notebook, a bar on a terminal, a line every few percent when piped.
 */
export function liveProgress(): (progress: BatchProgress) => Promise<void> {
  let bar: ProgressBar | undefined;
  return async (p) => {
    bar ??= new ProgressBar(p.numBatches, { label: `epoch ${p.epoch}/${p.epochs}` });
    await bar.update(p.batch, `loss ${p.loss.toFixed(3)}`);
    if (p.batch === p.numBatches) {
      await bar.finish();
      bar = undefined;
    }
  };
}

/** An interrupted notebook training, kept in the kernel until its cell runs again. */
interface HeldRun {
  /** The settings it was started with; a different one starts afresh. */
  fingerprint: string;
  model: tf.LayersModel;
  optimizer: TorchAdam;
  history: EpochRecord[];
  unfinished?: UnfinishedEpoch;
  rng?: RngState;
  seconds: number;
}

const heldRuns = new Map<string, HeldRun>();

/** Options of {@link trainInNotebook}. */
export interface NotebookTrainOptions {
  /** Builds the untrained model (not called when an interrupted run resumes). */
  build: () => Promise<tf.LayersModel> | tf.LayersModel;
  epochs: number;
  learningRate: number;
  /** The seed the caller seeded with (names the run). */
  seed: number;
  /** Training-image cap, for the record. */
  limit?: number;
}

/** Where an interrupted run stopped, e.g. `after batch 3/8 of epoch 1/15 (0 epochs finished)`. */
function stopPoint(
  history: readonly EpochRecord[],
  unfinished: UnfinishedEpoch | undefined,
  epochs: number,
  numBatches: number,
): string {
  const done = `${history.length} epoch(s) finished`;
  return unfinished
    ? `after batch ${unfinished.batches}/${numBatches} of epoch ${unfinished.epoch}/${epochs} ` +
      `(${done})`
    : `after epoch ${history.length}/${epochs} (${done})`;
}

/**
 * Train a model with the study's loop (`trainModel`, one line per epoch) from a notebook cell,
 * with a live progress line. Kernel > Interrupt stops it after the current batch: the cell ends
 * with a {@link KernelInterrupt}, and the model, its optimiser state, the finished epochs and the
 * random generator's state stay in the kernel, so that running the same cell again resumes with
 * the next batch and ends with the weights an uninterrupted run would have. Outside a kernel it
 * trains like `trainModel` (Ctrl-C ends the process as usual).
 *
 * @param kind Model kind, e.g. `cnn-regressor`.
 * @param loaders Training and validation batches.
 * @param options How to build the model and the run's settings.
 */
export async function trainInNotebook(
  kind: string,
  loaders: { train: BatchSource; val: BatchSource },
  options: NotebookTrainOptions,
): Promise<NotebookRun> {
  installCellEndHook();
  listenForInterrupts();
  const { epochs, learningRate, seed, limit } = options;
  const info = modelInfo(kind);
  const key = `${info.title} (seed ${seed})`;
  interrupts.latch.admit(key);
  const numBatches = loaders.train.numBatches;
  const fingerprint = JSON.stringify({
    kind,
    epochs,
    learningRate,
    seed,
    limit,
    images: loaders.train.size,
  });
  let held = heldRuns.get(key);
  heldRuns.delete(key);
  if (held && held.fingerprint !== fingerprint) {
    console.log(`Starting ${key} afresh: the interrupted run had other settings.`);
    held.model.dispose();
    held = undefined;
  }
  const started = performance.now();
  const model = held?.model ?? await options.build();
  if (held) {
    if (held.rng) restoreRngState(held.rng);
    const next = held.unfinished
      ? `epoch ${held.unfinished.epoch}/${epochs}, batch ${
        held.unfinished.batches + 1
      }/${numBatches}`
      : `epoch ${held.history.length + 1}/${epochs}`;
    console.log(
      `Resuming ${key} at ${next} (${held.history.length} epoch(s) finished before the interrupt).`,
    );
  }
  const result = await trainModel(model, loaders, {
    task: info.task,
    epochs,
    learningRate,
    optimizer: held?.optimizer,
    startEpoch: held?.history.length ?? 0,
    history: held?.history,
    resume: held?.unfinished,
    onBatchEnd: liveProgress(),
    stopAfterBatch: interruptRequested,
  });
  const seconds = (held?.seconds ?? 0) + (performance.now() - started) / 1000;
  if (result.stopped) {
    heldRuns.set(key, {
      fingerprint,
      model,
      optimizer: result.optimizer,
      history: result.history,
      unfinished: result.unfinished,
      rng: rngState(),
      seconds,
    });
    interrupts.latch.stopped(key);
    await settle();
    throw new KernelInterrupt(
      `${key} stopped ${stopPoint(result.history, result.unfinished, epochs, numBatches)}. ` +
        `Run this cell again to resume.`,
    );
  }
  return { kind, seed, limit, model, history: result.history, seconds };
}

/** Where {@link runInNotebook} keeps per-epoch state in quick mode. */
export const QUICK_STATE_DIR = "runs/notebook_quick/state";

/** Where {@link runInNotebook} keeps per-epoch state in full mode. */
export const STATE_DIR = "runs/notebook/state";

/**
 * Quick mode's settings for a recipe's prepare stage: 2 epochs (SumNet's MNIST pretraining has
 * 18), so that `beyond.ipynb` runs in about a minute.
 */
export const QUICK_PREPARE_OPTIONS: Readonly<Record<string, unknown>> = Object.freeze({
  epochs: 2,
});

/** Runs of {@link runInNotebook} started in this kernel (their saved state may be resumed). */
const startedHere = new Set<string>();

/**
 * Run `runExperiment` (a model's whole recipe, as `deno task train` runs it) from a notebook
 * cell. It saves its state after every epoch under `runs/` ({@link STATE_DIR}, or
 * {@link QUICK_STATE_DIR}), so Kernel > Interrupt, which stops it after the current batch, leaves
 * a run that the same cell resumes after its last finished epoch. Like {@link trainInNotebook}
 * it resumes only within the kernel that stopped it: the first run of a kernel removes state left
 * by another (e.g. a kernel that was restarted or killed mid-run), and the state is removed once
 * the run is done. In quick mode the recipe's prepare stage is shortened
 * ({@link QUICK_PREPARE_OPTIONS}).
 *
 * @param config The run, e.g. from {@link modelRunConfig}.
 * @param settings The notebook's settings.
 * @param options More `runExperiment` options (e.g. `{ test: false }`).
 */
export async function runInNotebook(
  config: RunConfig,
  settings: NotebookSettings,
  options: RunOptions = {},
): Promise<RunResult> {
  installCellEndHook();
  listenForInterrupts();
  const info = modelInfo(config.model);
  const key = `${info.title} (seed ${config.seed})`;
  interrupts.latch.admit(key);
  const stateDir = repoPath(
    settings.quick ? QUICK_STATE_DIR : STATE_DIR,
    `${info.prefix}_${config.seed}`,
  );
  if (!startedHere.has(stateDir)) {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    startedHere.add(stateDir);
  }
  await dropStateOfOtherConfig(stateDir, config);
  try {
    const result = await runExperiment(config, {
      prepareOptions: settings.quick ? QUICK_PREPARE_OPTIONS : undefined,
      ...options,
      stateDir,
      stopAfterBatch: interruptRequested,
    });
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    return result;
  } catch (error) {
    if (!(error instanceof RunStoppedError) || !interrupts.latch.pending) throw error;
    interrupts.latch.stopped(key);
    await settle();
    throw new KernelInterrupt(`${error.message}. Run this cell again to resume.`);
  }
}

/** Remove a notebook run's saved state when it belongs to another configuration. */
async function dropStateOfOtherConfig(stateDir: string, config: RunConfig): Promise<void> {
  let saved: RunConfig;
  try {
    saved = JSON.parse(await Deno.readTextFile(join(stateDir, "digitsum.json"))).config;
  } catch {
    return; // no state, or a half-written one that runExperiment will report
  }
  const difference = saved && configDifference(saved, config);
  if (!difference) return;
  console.log(`Starting afresh: ${displayPath(stateDir)} holds another run (${difference}).`);
  await Deno.remove(stateDir, { recursive: true });
}

/** A model trained in a notebook. */
export interface NotebookRun {
  /** Model kind, e.g. `cnn-regressor`. */
  kind: string;
  /** The seed it was trained with. */
  seed: number;
  model: tf.LayersModel;
  history: EpochRecord[];
  /** Wall seconds of the training. */
  seconds: number;
  /** Training-image cap it was trained with (`undefined` = all). */
  limit?: number;
}

/** Overall accuracy per split, as `runExperiment` reports it. */
export interface SplitScores {
  train: SplitAccuracy;
  val: SplitAccuracy;
  test?: SplitAccuracy;
}

/**
 * The held-out test loader: all 10,000 images, or the first {@link QUICK_TEST_LIMIT} in quick
 * mode (generated from MNIST's test digits when absent).
 */
export async function notebookTestLoader(settings: NotebookSettings): Promise<Loader> {
  return await loadTestLoader(settings.batchSize, {
    dataDir: settings.dataDir,
    limit: settings.quick ? QUICK_TEST_LIMIT : undefined,
  });
}

/**
 * The study's "Overall Accuracy" cell: evaluate on validation, training and (when given) the
 * held-out test split, printing one line each in the study's format.
 *
 * @param run The trained model.
 * @param splits Loaders of each split.
 * @param options `log`: line printer (default `console.log`).
 */
export async function overallAccuracies(
  run: NotebookRun,
  splits: { val: BatchSource; train: BatchSource; test?: BatchSource },
  options: { log?: (line: string) => void } = {},
): Promise<SplitScores> {
  const log = options.log ?? console.log;
  const info = modelInfo(run.kind);
  const score = async (loader: BatchSource, label: string): Promise<SplitAccuracy> => {
    const { correct, total, accuracy } = await evaluateAccuracy(run.model, loader, info.task);
    log(formatOverallLine(info.noun, label, accuracy));
    return { correct, total, accuracy };
  };
  const val = await score(splits.val, "Validation");
  const train = await score(splits.train, "Training");
  const test = splits.test ? await score(splits.test, "Held-out Test") : undefined;
  return { train, val, test };
}

/** Options of {@link saveNotebookRun}. */
export interface SaveRunOptions {
  settings: NotebookSettings;
  /** The backend that trained it (from `initBackend`). */
  backend: { name: string; versions?: unknown };
  /** Line printer for the "Saved ..." line (default `console.log`). */
  log?: (line: string) => void;
}

/**
 * Save a notebook run where `deno task train` would (`<modelsDir>/<prefix>_<seed>/`), with the
 * same metadata, so `deno task evaluate` and the other notebooks can load it. It prints the
 * directory and returns nothing (a cell ending with it shows no value).
 */
export async function saveNotebookRun(
  run: NotebookRun,
  scores: SplitScores,
  options: SaveRunOptions,
): Promise<void> {
  const { settings, backend } = options;
  const info = modelInfo(run.kind);
  const dir = join(settings.modelsDir, `${info.prefix}_${run.seed}`);
  await saveCheckpoint(dir, run.model, {
    kind: run.kind,
    config: notebookRunConfig(run.kind, settings, { seed: run.seed }),
    history: run.history,
    accuracy: scores,
    seconds: run.seconds,
    backend: backend.name,
    versions: backend.versions,
    quick: settings.quick,
  });
  (options.log ?? console.log)(`Saved ${displayPath(dir)}`);
}

/** The {@link AccuracyRecord} of a notebook run, for the results tables. */
export function accuracyRecord(run: NotebookRun, scores: SplitScores): AccuracyRecord {
  return {
    model: run.kind,
    seed: run.seed,
    train: scores.train.accuracy,
    val: scores.val.accuracy,
    test: scores.test?.accuracy,
    history: run.history,
    epochs: run.history.length,
    limit: run.limit,
  };
}
