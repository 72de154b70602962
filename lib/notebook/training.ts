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
import { type Loader, loadTestLoader } from "../data/loader.ts";
import {
  configDifference,
  type HeldRun,
  type RunConfig,
  runExperiment,
  type RunOptions,
  type RunResult,
  RunStoppedError,
  type SplitAccuracy,
} from "../training/experiment.ts";
import { type EpochRecord, evaluateAccuracy, formatOverallLine } from "../training/train.ts";
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
import { displayPath, type NotebookSettings, QUICK_TEST_LIMIT, repoPath } from "./settings.ts";
import { dataFingerprint } from "../data/generate.ts";
import { doneRecord, formatRunLine, type RunOutcome, type RunRecord } from "../results/record.ts";
import { type RunAccuracy } from "../training/experiment.ts";
import { modelRunConfig } from "./settings.ts";
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

/** Runs an interrupt stopped in this kernel, by state folder, until their cell runs again. */
const heldRuns = new Map<string, HeldRun>();

/**
 * Run `runExperiment` (a model's whole recipe, as `deno task train` runs it) from a notebook
 * cell. Kernel > Interrupt stops it after the current batch; the stopped run (model, optimiser,
 * finished epochs, random state) stays in the kernel, and running the same cell again continues
 * it with the next batch, to the numbers an uninterrupted run gives. It also saves its state
 * after every epoch under `runs/` ({@link STATE_DIR}, or {@link QUICK_STATE_DIR}), resumed only
 * within the kernel that saved it: the first run of a kernel removes state left by another (e.g.
 * a kernel that was restarted or killed mid-run), and the state is removed once the run is done.
 * In quick mode the recipe's prepare stage is shortened ({@link QUICK_PREPARE_OPTIONS}).
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
  const held = takeHeld(stateDir, config);
  try {
    const result = await runExperiment(config, {
      prepareOptions: settings.quick ? QUICK_PREPARE_OPTIONS : undefined,
      ...options,
      stateDir,
      resume: held,
      stopAfterBatch: interruptRequested,
    });
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    return result;
  } catch (error) {
    if (!(error instanceof RunStoppedError) || !interrupts.latch.pending) throw error;
    if (error.held) heldRuns.set(stateDir, error.held);
    interrupts.latch.stopped(key);
    await settle();
    throw new KernelInterrupt(
      `${info.title} seed ${config.seed} stopped ${error.where}. Run this cell again to resume.`,
    );
  }
}

/** The run an interrupt stopped in this state folder, when it had this config. */
function takeHeld(stateDir: string, config: RunConfig): HeldRun | undefined {
  const held = heldRuns.get(stateDir);
  heldRuns.delete(stateDir);
  if (!held || !configDifference(held.config, config)) return held;
  console.log(`Starting afresh: the interrupted run had other settings.`);
  held.model.dispose();
  return undefined;
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

/** A trained model in a notebook (e.g. loaded from a checkpoint) and its training history. */
export interface NotebookRun {
  /** Model kind, e.g. `sumnet`. */
  kind: string;
  /** The seed it was trained with. */
  seed: number;
  model: tf.LayersModel;
  history: EpochRecord[];
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
): Promise<RunAccuracy> {
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

/**
 * Train one model of the study from its cell, exactly as `deno task train --model <kind>` would
 * with the notebook's seed, limit and data ({@link modelRunConfig}): through
 * {@link runInNotebook}, so `runExperiment` prints the study's lines and overall accuracies and
 * saves the checkpoint to `<modelsDir>/<prefix>_<seed>/`. A model that cannot be built on this
 * machine (the registry says why, e.g. VGG weights missing) is skipped with that reason.
 *
 * @returns The run, or `undefined` when the model was skipped.
 */
export async function trainStudyModel(
  kind: string,
  settings: NotebookSettings,
): Promise<RunResult | undefined> {
  const info = modelInfo(kind);
  const build = { weightsPath: settings.vggWeights };
  const reason = await info.unavailableReason?.(build);
  if (reason) {
    console.log(`${info.title} skipped: ${reason}. The cells below continue without it.`);
    return undefined;
  }
  const config = modelRunConfig(kind, settings);
  const dir = join(settings.modelsDir, `${info.prefix}_${config.seed}`);
  const result = await runInNotebook(config, settings, {
    build,
    checkpointDir: dir,
    testLimit: settings.quick ? QUICK_TEST_LIMIT : undefined,
  });
  console.log(`Saved ${displayPath(dir)}`);
  return result;
}

/**
 * Keep the {@link RunRecord} of a notebook's run (as the sweep writes it) in `records`, for the
 * results tables, and print its one-line summary.
 */
export async function keepRecord(
  records: RunRecord[],
  result: RunResult,
  settings: NotebookSettings,
): Promise<void> {
  const record = doneRecord(result, await dataFingerprint(settings.dataDir));
  records.push(record);
  console.log(`Recorded: ${formatRunLine(record)}`);
}

/**
 * What the results tables need of a model evaluated in the notebook ({@link overallAccuracies})
 * rather than trained by it (e.g. a shipped checkpoint).
 */
export function runOutcome(
  run: NotebookRun,
  accuracy: RunAccuracy,
  settings: NotebookSettings,
): RunOutcome {
  return {
    model: run.kind,
    seed: run.seed,
    config: { ...modelRunConfig(run.kind, settings), seed: run.seed },
    accuracy,
    history: run.history,
  };
}
