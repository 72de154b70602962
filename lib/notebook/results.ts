/**
 * The results-across-seeds cells: run records from the sweep, the checkpoints or the notebook's
 * own runs, as the study's tables, bar charts and training curves.
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULT_MODELS_DIR } from "../constants.ts";
import { type EpochRecord } from "../training/train.ts";
import { modelInfo } from "../models/mod.ts";
import { displayPath, type NotebookSettings, repoPath } from "./settings.ts";
import { type Cell, showTable } from "./display.ts";
import { showBarChart, showLineChart } from "./figures.ts";

/** The overall accuracies (percent) of one model and seed. */
export interface AccuracyRecord {
  /** Model kind, e.g. `cnn-regressor`. */
  model: string;
  seed: number;
  train: number;
  val: number;
  /** Held-out test split; absent when it was not evaluated. */
  test?: number;
  /** Per-epoch history, when known (for the training-curve plots). */
  history?: EpochRecord[];
  /** Epochs of the run, when known. */
  epochs?: number;
  /** Training-image cap of the run (`undefined` = all images). */
  limit?: number;
}

/**
 * How the runs behind some records were trained, e.g. `15 epochs, all training images`
 * (several descriptions joined with `; ` when they differ).
 */
export function describeSetups(records: readonly AccuracyRecord[]): string {
  const setups = new Set(records.map((r) =>
    `${r.epochs ?? r.history?.length ?? "?"} epoch(s), ` +
    (r.limit ? `${r.limit} training images` : "all training images")
  ));
  return [...setups].join("; ");
}

/** Accuracy splits a table can show. */
export type Split = "train" | "val" | "test";

/**
 * One results-across-seeds table (the study's layout): a row per seed, a column per model,
 * each cell the accuracy of that model and seed on `split` (mean over repeats of a pair).
 *
 * @param records Accuracies from the sweep or from the notebook's own runs.
 * @param split Which split to tabulate.
 * @param models Column order (model kinds) and titles.
 */
export function seedTable(
  records: readonly AccuracyRecord[],
  split: Split,
  models: readonly { kind: string; title: string }[],
): { headers: string[]; rows: Cell[][] } {
  const seeds = [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b);
  const rows = seeds.map((seed) => [
    String(seed),
    ...models.map(({ kind }) => {
      const values = records.filter((r) => r.seed === seed && r.model === kind)
        .map((r) => r[split]).filter((v): v is number => typeof v === "number");
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    }),
  ]);
  return { headers: ["Seed", ...models.map((m) => m.title)], rows };
}

/**
 * The accuracy tables as bar-chart data: one group per model (those with records), one bar per
 * split (validation, training, held-out test), each the mean over seeds, with the standard
 * deviation across seeds as the error when there are several.
 *
 * @returns Arguments for `barChart(categories, series, { subtitle })` of `lib/charts.ts`.
 */
export function accuracyBars(
  records: readonly AccuracyRecord[],
  models: readonly { kind: string; title: string }[],
): {
  categories: string[];
  series: { name: string; values: (number | null)[]; errors?: (number | null)[] }[];
  subtitle: string;
} {
  const present = models.filter((m) => records.some((r) => r.model === m.kind));
  if (present.length === 0) throw new Error("accuracyBars(): no records for these models");
  const splits: [Split, string][] = [["val", "Validation"], ["train", "Training"], [
    "test",
    "Held-out test",
  ]];
  const seeds = [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b);
  const several = seeds.length > 1;
  const series = splits.map(([split, name]) => {
    const stats = present.map(({ kind }) => {
      const values = records.filter((r) => r.model === kind).map((r) => r[split])
        .filter((v): v is number => typeof v === "number");
      if (values.length === 0) return { mean: null, sd: null };
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const variance = values.length > 1
        ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1)
        : 0;
      return { mean, sd: Math.sqrt(variance) };
    });
    return {
      name,
      values: stats.map((s) => s.mean),
      ...(several ? { errors: stats.map((s) => s.sd) } : {}),
    };
  }).filter((s) => s.values.some((v) => v !== null));
  const subtitle = several
    ? `mean over seeds ${seeds.join(", ")}; whiskers: standard deviation across seeds`
    : `seed ${seeds.join(", ")}`;
  return { categories: present.map((m) => m.title), series, subtitle };
}

/** A model column of the results tables: kind and title. */
export interface ModelColumn {
  kind: string;
  title: string;
}

/** The study's three models, in the column order of its tables. */
export function studyModels(): ModelColumn[] {
  return ["cnn-regressor", "cnn-classifier", "vgg-regressor"]
    .map((kind) => ({ kind, title: modelInfo(kind).title }));
}

/**
 * The records behind the results-across-seeds cells: the sweep's results when its
 * `results.json` exists and has finished runs, else `fallback` (the notebook's own runs).
 *
 * @returns The records and a line saying where they come from and how they were trained.
 */
export async function resultsAcrossSeeds(
  settings: NotebookSettings,
  fallback: readonly AccuracyRecord[],
): Promise<{ records: AccuracyRecord[]; source: string }> {
  const swept = await readSweepResults(settings.sweepResults);
  if (swept?.length) {
    return {
      records: swept,
      source: `Source: ${displayPath(settings.sweepResults)}, ${swept.length} finished runs ` +
        `(${describeSetups(swept)}).`,
    };
  }
  const seeds = [...new Set(fallback.map((r) => r.seed))].join(", ");
  return {
    records: [...fallback],
    source: `Source: this notebook's runs, seed ${seeds} (${describeSetups(fallback)}); ` +
      `run 'deno task sweep' for seeds 0, 10 and 42.`,
  };
}

/**
 * The study's results tables, computed: validation, training and held-out test accuracy, a row
 * per seed and a column per model (models without runs are shown as `-`, with a note).
 */
export async function showSeedTables(
  records: readonly AccuracyRecord[],
  models: readonly ModelColumn[],
): Promise<void> {
  const absent = models.filter((m) => !records.some((r) => r.model === m.kind));
  if (absent.length) {
    console.log(`No runs of ${absent.map((m) => m.title).join(", ")}: shown as '-'.`);
  }
  const tables: [Split, string][] = [
    ["val", "Validation accuracy"],
    ["train", "Training accuracy"],
    ["test", "Held-out test accuracy"],
  ];
  for (const [split, caption] of tables) {
    const table = seedTable(records, split, models);
    await showTable(table.headers, table.rows, { unit: "%", caption });
  }
}

/**
 * One table of mean accuracies per model (a row each: number of runs, then validation,
 * training and held-out test accuracy, averaged over seeds).
 */
export async function showAccuracyTable(
  records: readonly AccuracyRecord[],
  models: readonly ModelColumn[],
): Promise<void> {
  const bars = accuracyBars(records, models);
  const present = models.filter((m) => records.some((r) => r.model === m.kind));
  const rows = present.map((m, i) => [
    m.title,
    String(records.filter((r) => r.model === m.kind).length),
    ...bars.series.map((s) => s.values[i]),
  ]);
  await showTable(["model", "runs", ...bars.series.map((s) => s.name)], rows, { unit: "%" });
}

/**
 * The study models' runs on record: the sweep's results when present, else the checkpoints in
 * `trained_models/` and then the notebooks' quick-mode checkpoints.
 */
export async function studyRunsOnRecord(settings: NotebookSettings): Promise<AccuracyRecord[]> {
  const swept = await readSweepResults(settings.sweepResults);
  if (swept?.length) return swept;
  const dirs = [repoPath(DEFAULT_MODELS_DIR), settings.modelsDir];
  return await readCheckpointRecords([...new Set(dirs)], studyModels().map((m) => m.kind));
}

/** Training accuracy, validation accuracy and the gap between them, one row per run. */
export async function showTrainValGap(records: readonly AccuracyRecord[]): Promise<void> {
  if (records.length === 0) {
    return console.log("No trained study models on record (run study.ipynb or 'deno task sweep').");
  }
  console.log(`Runs on record: ${describeSetups(records)}.`);
  const rows = records.map((r) => [
    modelInfo(r.model).title,
    String(r.seed),
    r.train,
    r.val,
    r.train - r.val,
  ]);
  await showTable(["model", "seed", "training", "validation", "gap"], rows, { unit: "%" });
}

/** The accuracy tables as a grouped bar chart (see {@link accuracyBars}). */
export async function showAccuracyBars(
  records: readonly AccuracyRecord[],
  models: readonly ModelColumn[],
  options: { title?: string } = {},
): Promise<void> {
  const bars = accuracyBars(records, models);
  await showBarChart(bars.categories, bars.series, {
    title: options.title ?? "Overall accuracy by model",
    subtitle: bars.subtitle,
    yLabel: "accuracy",
    yUnit: "%",
    decimals: 1,
    alt: "accuracy bar chart",
  });
}

/**
 * Training curves of the records that carry a history: one training-loss chart per model (one
 * line per seed; the losses of regressors and classifiers differ in kind) and one chart of
 * validation accuracy per epoch for all of them.
 */
export async function showTrainingCurves(
  records: readonly Pick<AccuracyRecord, "model" | "seed" | "history">[],
  models: readonly ModelColumn[],
): Promise<void> {
  const withHistory = records.filter((r) => r.history?.length);
  for (const { kind, title } of models) {
    const runs = withHistory.filter((r) => r.model === kind);
    if (runs.length === 0) continue;
    const loss = runs.map((r) => ({
      name: `seed ${r.seed}`,
      y: r.history!.map((e) => e.trainLoss),
    }));
    const yLabel = modelInfo(kind).task === "regression" ? "MSE" : "cross entropy";
    await showLineChart(loss, {
      title: `${title}: training loss`,
      xLabel: "epoch",
      yLabel,
      height: 300,
      alt: `${title} training loss`,
    });
  }
  if (withHistory.length === 0) return console.log("No per-epoch history to plot.");
  const accuracy = withHistory.map((r) => ({
    name: `${modelInfo(r.model).title} (seed ${r.seed})`,
    y: r.history!.map((e) => e.valAccuracy),
  }));
  await showLineChart(accuracy, {
    title: "Validation accuracy per epoch",
    xLabel: "epoch",
    yLabel: "accuracy",
    yUnit: "%",
    alt: "validation accuracy per epoch",
  });
}

/**
 * Read accuracy records from the sweep's `results.json`. Accepts an array of runs or an object
 * with a `runs` array; each run needs `model`, `seed` and the accuracies either flat
 * (`train`, `val`, `test` numbers) or as `accuracy: { train: { accuracy }, ... }` (the shape
 * `runExperiment` saves).
 *
 * @returns The records, or `undefined` when the file does not exist.
 */
export async function readSweepResults(path: string): Promise<AccuracyRecord[] | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`Cannot read ${path}: invalid JSON (${(error as Error).message})`);
  }
  const runs = Array.isArray(parsed) ? parsed : (parsed as { runs?: unknown })?.runs;
  if (!Array.isArray(runs)) {
    throw new Error(`Cannot read ${path}: expected an array of runs or an object with 'runs'`);
  }
  const shared = Array.isArray(parsed)
    ? {}
    : (parsed as { config?: Record<string, unknown> }).config ?? {};
  return runs.map((run, i) => parseRun(run, `${path} run ${i + 1}`, shared))
    .filter((r): r is AccuracyRecord => r !== undefined);
}

/**
 * Accuracy records from saved checkpoints (`<dir>/<prefix>_<seed>/digitsum.json`, as
 * `deno task train` and the notebooks write them), without loading any weights. The first
 * directory holding a given model and seed wins.
 *
 * @param dirs Directories to look in, in order of preference (missing ones are skipped).
 * @param kinds Model kinds to look for.
 */
export async function readCheckpointRecords(
  dirs: readonly string[],
  kinds: readonly string[],
): Promise<AccuracyRecord[]> {
  const found = new Map<string, AccuracyRecord>();
  for (const dir of dirs) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw new Error(`Cannot read ${dir}: ${(error as Error).message}`);
    }
    for (const kind of kinds) {
      const prefix = modelInfo(kind).prefix;
      for (const entry of entries) {
        const match = entry.name.match(new RegExp(`^${prefix}_(\\d+)$`));
        if (!entry.isDirectory || !match || found.has(`${kind}_${match[1]}`)) continue;
        const metaPath = join(dir, entry.name, "digitsum.json");
        let meta: unknown;
        try {
          meta = JSON.parse(await Deno.readTextFile(metaPath));
        } catch (error) {
          if (error instanceof Deno.errors.NotFound) continue;
          throw new Error(`Cannot read ${metaPath}: ${(error as Error).message}`);
        }
        const record = parseRun(
          { model: kind, seed: Number(match[1]), ...meta as object },
          metaPath,
        );
        if (record) found.set(`${kind}_${match[1]}`, record);
      }
    }
  }
  return [...found.values()];
}

/** The per-epoch history saved in a checkpoint's metadata (empty when there is none). */
export function checkpointHistory(meta: Record<string, unknown>): EpochRecord[] {
  return Array.isArray(meta.history) ? meta.history as EpochRecord[] : [];
}

function pick(r: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => r[k] !== undefined).map((k) => [k, r[k]]));
}

function accuracyOf(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (
    value && typeof value === "object" &&
    typeof (value as { accuracy?: unknown }).accuracy === "number"
  ) {
    return (value as { accuracy: number }).accuracy;
  }
  return undefined;
}

function parseRun(
  run: unknown,
  where: string,
  shared: Record<string, unknown> = {},
): AccuracyRecord | undefined {
  if (!run || typeof run !== "object") throw new Error(`Cannot read ${where}: not an object`);
  const r = run as Record<string, unknown>;
  // A run's own settings win over the file-wide configuration (the sweep's results.json).
  const config = { ...shared, ...r.config as object, ...pick(r, ["epochs", "limit"]) } as Record<
    string,
    unknown
  >;
  const model = r.model ?? r.kind ?? config.model;
  const seed = r.seed ?? config.seed;
  if (typeof model !== "string" || typeof seed !== "number") {
    throw new Error(`Cannot read ${where}: missing 'model' or 'seed'`);
  }
  if (r.status !== undefined && r.status !== "done" && r.status !== "ok") return undefined;
  const acc = (r.accuracy ?? r) as Record<string, unknown>;
  const train = accuracyOf(acc.train);
  const val = accuracyOf(acc.val);
  if (train === undefined || val === undefined) return undefined; // unfinished run
  return {
    model,
    seed,
    train,
    val,
    test: accuracyOf(acc.test),
    history: Array.isArray(r.history) ? r.history as EpochRecord[] : undefined,
    epochs: typeof config.epochs === "number" ? config.epochs : undefined,
    limit: typeof config.limit === "number" ? config.limit : undefined,
  };
}
