/**
 * The one record of a finished run (`RunRecord`, a run folder's `result.json`, format
 * {@link RUN_RECORD_FORMAT}): training makes it, the sweep writes and merges it, the report,
 * the notebooks and the README read it. Also the layout of a run folder and its readers.
 *
 * ```
 * <run>/config.json            the run's RunConfig, written before it starts
 * <run>/history.json           per-epoch train loss, validation accuracy, seconds (grows)
 * <run>/result.json            written last: status done|skipped|failed, accuracies, ...
 * <run>/val_predictions.json   predicted and true sum per validation image
 * <run>/checkpoint/            the trained model (tfjs layers format)
 * <run>/state/                 per-epoch resumable state, removed once result.json exists
 * <run>/log.txt                everything the run printed
 * ```
 *
 * @module
 */
import { basename, join } from "node:path";
import type { DataFingerprint } from "../data/generate.ts";
import { describeValue, isCount, isNumberOrNull, isObject, readJsonFile } from "../io/json.ts";
import { exists } from "../io/fsutil.ts";
import { formatDuration } from "../runtime/progress.ts";
import type { RunAccuracy, RunConfig, RunResult } from "../training/experiment.ts";
import { type EpochRecord, historyProblem } from "../training/train.ts";
import { meanRate } from "./stats.ts";

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

/** How a run ended, as recorded in its `result.json`. */
export type RunStatus = "done" | "skipped" | "failed";

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
  accuracy?: RunAccuracy;
  history?: EpochRecord[];
  params?: number;
  /** Wall seconds of the run, epochs before a resume included. */
  seconds?: number;
  /** Backend that trained it. */
  backend?: { name: string; [key: string]: unknown };
  /** Runtime and library versions. */
  versions?: Record<string, string>;
  /** What the recipe's prepare stage did (e.g. SumNet's stage 1: which digits it pasted). */
  prepared?: Readonly<Record<string, unknown>>;
  /** The data it was trained and tested on; records of different data are never mixed. */
  data: DataFingerprint;
  /** ISO time the record was written. */
  finishedAt: string;
}

/**
 * What the results tables of the notebooks read of a run: a part of its {@link RunRecord} (a
 * RunRecord is one). A notebook also makes one from a checkpoint's metadata, which records no
 * data fingerprint.
 */
export type RunOutcome = Pick<RunRecord, "model" | "seed" | "config" | "accuracy" | "history">;

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

/** One-line summary of a finished run. */
export function formatRunLine(record: RunRecord): string {
  const name = `${record.title} seed ${record.seed}`;
  if (record.status !== "done") return `${record.status} ${name}: ${record.reason ?? ""}`;
  const acc = record.accuracy!;
  const epochs = record.history?.length ?? 0;
  const rate = meanRate(record.history ?? []);
  return `done ${name}: val ${acc.val.accuracy.toFixed(2)}%, train ${
    acc.train.accuracy.toFixed(2)
  }%` + (acc.test ? `, test ${acc.test.accuracy.toFixed(2)}%` : "") +
    ` (${epochs} epoch${epochs === 1 ? "" : "s"} in ${formatDuration(record.seconds ?? NaN)}, ` +
    `${rate.toFixed(1)} train images/s on ${record.backend?.name ?? "?"})`;
}

/** Where the study grid's run records are committed (`<dir>/runs/<model>_<seed>/result.json`). */
export const STUDY_DIR = "results/study";

/** Where the PyTorch cross-check's records are committed. */
export const PYTORCH_DIR = "results/pytorch";

/** Finished run records in `<dir>/<key>/result.json` (e.g. the PyTorch cross-check). */
export async function readRecordsIn(dir: string): Promise<RunRecord[]> {
  if (!(await exists(dir))) return [];
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.isDirectory) names.push(entry.name);
  const records: RunRecord[] = [];
  for (const name of names.sort()) {
    const record = await readRunRecord(join(dir, name));
    if (record?.status === "done") records.push(record);
  }
  return records;
}

/**
 * The record of a finished run, from what `runExperiment` returned and the fingerprint of the
 * data it was trained on.
 */
export function doneRecord(result: RunResult, data: DataFingerprint): RunRecord {
  const { config, info } = result;
  return {
    format: RUN_RECORD_FORMAT,
    key: `${config.model}_${config.seed}`,
    model: config.model,
    title: info.title,
    seed: config.seed,
    config,
    status: "done",
    accuracy: result.accuracy,
    history: result.history,
    params: result.params,
    seconds: result.seconds,
    backend: JSON.parse(JSON.stringify(result.backend)),
    versions: result.versions,
    ...(result.prepared ? { prepared: result.prepared } : {}),
    data,
    finishedAt: new Date().toISOString(),
  };
}
