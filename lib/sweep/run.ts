/**
 * Running the grid of a sweep (`deno task sweep`): every run of the grid that has not finished,
 * in grid order, each through `runExperiment`, resumable, with its record written last.
 *
 * Layout of an output directory (default `runs/sweep`):
 *
 * ```
 * <out>/config.json              the sweep's configuration (one training setup per directory)
 * <out>/runs/<model>_<seed>/     one run folder each (results/record.ts)
 * <out>/RESULTS.md, results.json, report.html, figures/   (results/report.ts)
 * ```
 *
 * A run is finished when its `result.json` says `done`; a re-run skips it. A run interrupted
 * mid-way resumes from `state/` (its last completed epoch) to the same final numbers. A run
 * directory never changes configuration: a sweep whose configuration differs from what a run
 * directory records is refused before anything is trained.
 *
 * @module
 */
import { autoBackendGuess } from "../runtime/backend.ts";
import { join } from "node:path";
import { IMAGES_PER_FILE } from "../constants.ts";
import { type DataFingerprint, dataFingerprint, ensureDataset } from "../data/generate.ts";
import {
  ensureDir,
  exists,
  isStorageError,
  removeStaleTemps,
  writeJsonAtomic,
} from "../io/fsutil.ts";
import { isObject, readJsonFile } from "../io/json.ts";
import { modelInfo, ModelUnavailableError } from "../models/mod.ts";
import {
  describeData,
  doneRecord,
  formatRunLine,
  readRunRecord,
  RUN_FILES,
  RUN_RECORD_FORMAT,
  type RunRecord,
} from "../results/record.ts";
import { formatDuration, ProgressBar } from "../runtime/progress.ts";
import { recoverCheckpoint } from "../training/checkpoint.ts";
import { configDifference, runExperiment, RunStoppedError } from "../training/experiment.ts";
import { type EpochRecord, historyProblem } from "../training/train.ts";
import {
  readRunConfig,
  readSweepConfig,
  type RunSpec,
  selectShard,
  setupDifference,
  type Shard,
  type SweepConfig,
  sweepGrid,
  unionGrid,
  validateConfig,
} from "./config.ts";

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

/** Why a run of `model` cannot start on this machine (e.g. VGG weights missing), or `undefined`. */
export async function skipReason(model: string): Promise<string | undefined> {
  return await modelInfo(model).unavailableReason?.({});
}

/**
 * A note before the grid starts for models that train much slower than the CNNs (those with a
 * time estimate in the registry, e.g. VGG, ~25x slower on a CPU), or `undefined`.
 */
function slowRunsWarning(config: SweepConfig, model: string, runs: number): string | undefined {
  const info = modelInfo(model);
  if (!info.estimateSeconds || runs === 0) return undefined;
  const backend = config.backend === "auto" ? autoBackendGuess() : config.backend;
  const train = config.limit ?? Math.trunc(IMAGES_PER_FILE * 3 * config.trainFraction);
  const val = config.limit === null
    ? IMAGES_PER_FILE * 3 - train
    : Math.max(config.batchSize, Math.ceil(config.limit / 4));
  const test = config.testLimit ?? IMAGES_PER_FILE;
  const seconds = info.estimateSeconds({
    trainImages: config.epochs * train,
    evalImages: config.epochs * val + train + val + test,
    backend,
  });
  return `Note: ${runs} ${info.title} run(s) to do, about ${formatDuration(seconds)} each on a ` +
    `2-core CPU (${backend}); much less on a GPU backend. Leave them out with --models.`;
}

/** Write a run's `history.json`: the epochs it has finished. */
async function writeHistory(run: RunSpec, history: readonly EpochRecord[]): Promise<void> {
  await writeJsonAtomic(join(run.dir, RUN_FILES.history), {
    model: run.model,
    seed: run.seed,
    epochs: run.config.epochs,
    history,
  });
}

/** What a run's record holds besides what every record of the run has. */
type RecordFields = Omit<
  RunRecord,
  "format" | "key" | "model" | "title" | "seed" | "config" | "data" | "finishedAt"
>;

/** Write a run's `result.json` (its {@link RunRecord}), last of its files. */
async function writeRecord(
  run: RunSpec,
  data: DataFingerprint,
  fields: RecordFields,
): Promise<RunRecord> {
  const record: RunRecord = {
    format: RUN_RECORD_FORMAT,
    key: run.key,
    model: run.model,
    title: modelInfo(run.model).title,
    seed: run.seed,
    config: run.config,
    ...fields,
    data,
    finishedAt: new Date().toISOString(),
  };
  await writeJsonAtomic(join(run.dir, RUN_FILES.result), record);
  return record;
}

/** A run's line printer (to the sweep's printer and the run's `log.txt`) and its closer. */
async function openRunLog(
  run: RunSpec,
  out: string,
  log: (line: string) => void,
): Promise<{ log: (line: string) => void; close: () => void }> {
  let file: Deno.FsFile;
  try {
    await ensureDir(run.dir);
    await writeJsonAtomic(join(run.dir, RUN_FILES.config), run.config);
    file = await Deno.open(join(run.dir, RUN_FILES.log), { append: true, create: true });
  } catch (error) {
    throw storageStopped(error, out);
  }
  const encoder = new TextEncoder();
  return {
    log: (line) => {
      log(line);
      const bytes = encoder.encode(line + "\n");
      for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
    },
    close: () => file.close(),
  };
}

/** What the runs of one {@link runSweep} call share. */
interface SweepContext {
  config: SweepConfig;
  options: SweepOptions;
  data: DataFingerprint;
  summary: SweepSummary;
  log: (line: string) => void;
  progress: boolean;
  /** The bar of the whole grid (epochs). */
  gridBar: ProgressBar;
  /** Epochs finished by this call. */
  epochsDone: number;
}

/** Train one run to its end and write its files, the record last. */
async function trainRun(run: RunSpec, context: SweepContext, log: (line: string) => void) {
  const { config, options, progress, gridBar } = context;
  const name = `${modelInfo(run.model).title} seed ${run.seed}`;
  let history = await stateHistory(run.dir);
  const runBar = new ProgressBar(run.config.epochs, { label: "run", mode: "none" });
  const result = await runExperiment(run.config, {
    checkpointDir: join(run.dir, RUN_FILES.checkpoint),
    stateDir: join(run.dir, RUN_FILES.state),
    log,
    progress,
    testLimit: config.testLimit ?? undefined,
    shouldStop: options.shouldStop,
    onEpochEnd: async (record) => {
      history = [...history.filter((r) => r.epoch < record.epoch), record];
      await writeHistory(run, history);
      context.epochsDone += 1;
      if (progress) {
        context.log(`${runBar.render(record.epoch, name)} | ${gridBar.render(context.epochsDone)}`);
      }
    },
  });
  try {
    // Again after the evaluation: a resumed run whose epochs were all done adds none above.
    await writeHistory(run, result.history);
    await writeJsonAtomic(join(run.dir, RUN_FILES.predictions), {
      split: "val",
      predictions: Array.from(result.valPredictions.predictions),
      labels: Array.from(result.valPredictions.labels),
    });
    const record = doneRecord(result, context.data);
    await writeJsonAtomic(join(run.dir, RUN_FILES.result), record);
    if (!options.keepState) {
      await Deno.remove(join(run.dir, RUN_FILES.state), { recursive: true }).catch(() => {});
    }
    context.summary.finished.push(run.key);
    log(formatRunLine(record));
  } finally {
    result.model.dispose();
  }
}

/**
 * Record how a run ended that did not finish: stopped (returns true: the sweep stops), or
 * skipped (its model became unavailable) or failed, with the reason.
 */
async function recordUnfinished(
  run: RunSpec,
  error: unknown,
  context: SweepContext,
  log: (line: string) => void,
): Promise<boolean> {
  // A full disk or an unwritable folder is not the run's fault: stop, record nothing.
  if (isStorageError(error)) throw storageStopped(error, context.config.out);
  const name = `${modelInfo(run.model).title} seed ${run.seed}`;
  try {
    if (error instanceof RunStoppedError) {
      context.summary.stopped = { key: run.key, message: error.message };
      log(error.message);
      return true;
    }
    const message = (error as Error).message ?? String(error);
    if (error instanceof ModelUnavailableError) {
      const reason = message.split("\n")[0];
      await writeRecord(run, context.data, { status: "skipped", reason });
      context.summary.skipped.push({ key: run.key, reason });
      log(`skipped ${name}: ${reason}`);
    } else {
      await writeRecord(run, context.data, { status: "failed", reason: message });
      context.summary.failed.push({ key: run.key, reason: message });
      log(`failed ${name}: ${message}`);
    }
    return false;
  } catch (recording) {
    throw isStorageError(recording) ? storageStopped(recording, context.config.out) : recording;
  }
}

/** Run (or skip) one run of the grid; true when the sweep must stop after it. */
async function sweepRun(run: RunSpec, context: SweepContext): Promise<boolean> {
  const runLog = await openRunLog(run, context.config.out, context.log);
  try {
    const reason = await skipReason(run.model);
    if (reason) {
      const record = await writeRecord(run, context.data, { status: "skipped", reason });
      context.summary.skipped.push({ key: run.key, reason });
      runLog.log(formatRunLine(record));
      return false;
    }
    await trainRun(run, context, runLog.log);
    return false;
  } catch (error) {
    return await recordUnfinished(run, error, context, runLog.log);
  } finally {
    runLog.close();
  }
}

/** The line that opens a sweep: the grid, this call's part of it and what is left to do. */
function gridLine(config: SweepConfig, plan: SweepPlan, options: SweepOptions): string {
  const totalEpochs = [...plan.epochsLeft.values()].reduce((a, b) => a + b, 0);
  return `Grid: ${plan.grid.length} runs (${config.models.length} models x ` +
    `${config.seeds.length} seeds)` +
    (options.shard ? `, shard ${options.shard.index}/${options.shard.count}` : "") +
    (options.worker ? `, worker ${options.worker.index}/${options.worker.count}` : "") +
    `: ${plan.selected.length} selected, ${plan.alreadyDone.length} already done, ` +
    `${plan.todo.length} to run (${totalEpochs} epochs)`;
}

/**
 * Run (or resume) every selected run of the grid that has not finished, in grid order.
 *
 * Never throws for a single run's failure: skipped (model unavailable, e.g. VGG weights missing)
 * and failed runs are recorded in their `result.json` and retried by the next call. Throws before
 * training anything when the output directory holds another configuration ({@link prepareOutDir}).
 *
 * @param config The sweep configuration (see `resolveConfig`).
 * @param options Shard, logging, progress and stop flag.
 */
export async function runSweep(config: SweepConfig, options: SweepOptions = {}): Promise<
  SweepSummary
> {
  const started = performance.now();
  const log = options.log ?? console.log;
  const progress = options.progress ?? true;
  const plan = await planSweep(config, { ...options, log });
  const { selected, todo, epochsLeft } = plan;
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
  for (const model of config.models) {
    const runs = todo.filter((r) => r.model === model && epochsLeft.get(r.key)! > 0).length;
    const warning = slowRunsWarning(config, model, runs);
    if (warning) log(warning);
  }
  log(gridLine(config, plan, options));
  const totalEpochs = [...epochsLeft.values()].reduce((a, b) => a + b, 0);
  const gridBar = new ProgressBar(Math.max(1, totalEpochs), {
    label: "grid",
    mode: progress ? "lines" : "none",
  });
  const context: SweepContext = {
    config,
    options,
    data: data!,
    summary,
    log,
    progress,
    gridBar,
    epochsDone: 0,
  };
  for (const [i, run] of todo.entries()) {
    if (options.shouldStop?.()) {
      summary.stopped ??= { key: run.key, message: `Stopped before ${run.key}` };
      break;
    }
    const name = `${modelInfo(run.model).title} seed ${run.seed}`;
    if (progress) log(gridBar.render(context.epochsDone, `run ${i + 1}/${todo.length}: ${name}`));
    if (await sweepRun(run, context)) break;
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}
