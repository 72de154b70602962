/**
 * The results-across-seeds cells: run records from the sweep, the checkpoints or the notebook's
 * own runs, as the study's tables, bar charts and training curves.
 *
 * @module
 */
import { join } from "node:path";
import { type EpochRecord } from "../training/train.ts";
import { modelInfo } from "../models/mod.ts";
import { type NotebookSettings, repoPath } from "./settings.ts";
import { type Cell, showTable } from "./display.ts";
import { showBarChart, showLineChart } from "./figures.ts";
import { isObject, readJsonFile } from "../io/json.ts";
import { studyModelKinds } from "../models/mod.ts";
import {
  assertSameData,
  PYTORCH_DIR,
  readRecordsIn,
  type RunOutcome,
  STUDY_DIR,
} from "../results/record.ts";
import { formatStats, meanStd } from "../results/stats.ts";
import { studyVerdicts } from "../results/verdict.ts";
import type { Split } from "../results/report.ts";
import { type RunAccuracy, type RunConfig, studyConfig } from "../training/experiment.ts";

/**
 * How the runs behind some records were trained, e.g. `15 epochs, all training images`
 * (several descriptions joined with `; ` when they differ).
 */
export function describeSetups(records: readonly RunOutcome[]): string {
  const setups = new Set(records.map((r) =>
    `${r.config.epochs} epoch(s), ` +
    (r.config.limit ? `${r.config.limit} training images` : "all training images")
  ));
  return [...setups].join("; ");
}

/** The accuracy of a run on one split (percent), when it was evaluated there. */
function accuracyOn(record: RunOutcome, split: Split): number | undefined {
  return record.accuracy?.[split]?.accuracy;
}

/**
 * One results-across-seeds table (the study's layout): a row per seed, a column per model,
 * each cell the accuracy of that model and seed on `split` (mean over repeats of a pair); with
 * more than one seed, a last row `mean ± std` over the seeds (`10.68 ± 0.71%`).
 *
 * @param records Accuracies from the sweep or from the notebook's own runs.
 * @param split Which split to tabulate.
 * @param models Column order (model kinds) and titles.
 */
export function seedTable(
  records: readonly RunOutcome[],
  split: Split,
  models: readonly { kind: string; title: string }[],
): { headers: string[]; rows: Cell[][] } {
  const seeds = [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b);
  const rows: Cell[][] = seeds.map((seed) => [
    String(seed),
    ...models.map(({ kind }) => {
      const values = records.filter((r) => r.seed === seed && r.model === kind)
        .map((r) => accuracyOn(r, split)).filter((v): v is number => typeof v === "number");
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    }),
  ]);
  if (seeds.length > 1) {
    rows.push([
      "mean ± std",
      ...models.map((_, j) => {
        const values = rows.map((row) => row[j + 1]).filter((v): v is number => v !== null);
        return values.length ? formatStats(meanStd(values)) : null;
      }),
    ]);
  }
  return { headers: ["Seed", ...models.map((m) => m.title)], rows };
}

/**
 * The accuracy tables as bar-chart data: one group per model (those with records), one bar per
 * split (validation, training, held-out test), each the mean over seeds, with the standard
 * deviation across seeds as the error when there are several.
 *
 * @returns Arguments for `barChart(categories, series, { subtitle })` of `lib/results/charts.ts`.
 */
export function accuracyBars(
  records: readonly RunOutcome[],
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
      const values = records.filter((r) => r.model === kind).map((r) => accuracyOn(r, split))
        .filter((v): v is number => typeof v === "number");
      const { mean, std, n } = meanStd(values);
      return { mean, sd: n === 0 ? null : std ?? 0 };
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

/** The study's models (the registry's), in the column order of its tables. */
export function studyModels(): ModelColumn[] {
  return studyModelKinds().map((kind) => ({ kind, title: modelInfo(kind).title }));
}

/**
 * The records behind the results-across-seeds cells. In full mode: the committed run records of
 * the study grid ({@link studyRunsOnRecord}, every seed), never this notebook's runs alone. In
 * quick mode: `own`, the notebook's own runs (a smoke test; the committed records were trained
 * on all images for 15 epochs and are not mixed with them).
 *
 * @returns The records and a line saying where they come from and how they were trained.
 */
export async function resultsAcrossSeeds(
  settings: NotebookSettings,
  own: readonly RunOutcome[],
): Promise<{ records: RunOutcome[]; source: string }> {
  if (!settings.quick) {
    const committed = await studyRunsOnRecord();
    if (committed.length) {
      const seeds = [...new Set(committed.map((r) => r.seed))].sort((a, b) => a - b);
      return {
        records: committed,
        source: `Source: the committed run records in ${STUDY_DIR}/runs/ ` +
          `(${committed.length} finished runs, seeds ${seeds.join(", ")}; ` +
          `${describeSetups(committed)}), written by 'deno task sweep --out ${STUDY_DIR}'.`,
      };
    }
  }
  const seeds = [...new Set(own.map((r) => r.seed))].join(", ");
  return {
    records: [...own],
    source: `Source: this notebook's runs, seed ${seeds} (${describeSetups(own)})` +
      (settings.quick
        ? "; quick mode, so not the committed records of the full study."
        : `; no committed records in ${STUDY_DIR}/runs/ (run 'deno task sweep --out ${STUDY_DIR}').`),
  };
}

/**
 * This notebook's own runs beside the committed records of the same model and seed (full mode):
 * the same configuration trained twice, by this notebook and by the sweep. Prints why nothing is
 * compared in quick mode or without records.
 */
export async function showOwnRunsBesideRecords(
  own: readonly RunOutcome[],
  records: readonly RunOutcome[],
  settings: NotebookSettings,
): Promise<void> {
  if (settings.quick) {
    return console.log(
      "Quick mode: this notebook's runs are the tables above (nothing to compare).",
    );
  }
  const pairs = own.map((mine) => ({
    mine,
    theirs: records.find((r) => r.model === mine.model && r.seed === mine.seed && r !== mine),
  })).filter((p) => p.theirs);
  if (pairs.length === 0) return console.log("No committed record of this notebook's runs.");
  console.log(
    `This notebook's runs beside the committed records of the same model and seed ` +
      `(${STUDY_DIR}/runs/), in % (same seed, split and configuration; floating-point sums ` +
      `in another order can move a few images):`,
  );
  const rows = pairs.map(({ mine, theirs }) => [
    `${modelInfo(mine.model).title} seed ${mine.seed}`,
    ...(["val", "train", "test"] as const).flatMap((split) => [
      accuracyOn(mine, split),
      accuracyOn(theirs!, split),
    ]),
  ]);
  await showTable(
    ["run", "val here", "val record", "train here", "train record", "test here", "test record"],
    rows,
    { unit: "%" },
  );
}

/**
 * The study's published numbers beside digitsum's (mean ± std over seeds), then one sentence per
 * model saying whether digitsum reproduces the study and why not when it does not, with the
 * PyTorch cross-check of `results/pytorch/` ({@link studyVerdicts}, as in the README).
 */
export async function showStudyComparison(
  records: readonly RunOutcome[],
  settings: Pick<NotebookSettings, "quick">,
): Promise<void> {
  if (settings.quick) {
    return console.log(
      "Quick mode: 1-epoch runs on 512 images are not compared with the study (full mode is).",
    );
  }
  const pytorch = await readRecordsIn(repoPath(PYTORCH_DIR));
  const verdicts = studyVerdicts(records, pytorch);
  if (verdicts.length === 0) return console.log("No finished study runs to compare.");
  const rows = verdicts.map((v) => [
    v.title,
    formatStats(meanStd([...v.theirs.val])),
    formatStats(meanStd(v.ours.val)),
    formatStats(meanStd([...v.theirs.train])),
    formatStats(meanStd(v.ours.train)),
    formatStats(meanStd(v.ours.test)),
  ]);
  await showTable(
    ["model", "study val", "digitsum val", "study train", "digitsum train", "digitsum test"],
    rows,
    {
      caption: "Mean ± std over seeds: the study's published tables (seeds 0, 10, 42) and " +
        "digitsum's records",
    },
  );
  for (const v of verdicts) console.log(v.sentence);
  for (const { kind, title } of studyModels()) {
    if (!verdicts.some((v) => v.model === kind)) {
      console.log(`${title}: no finished run on record, so nothing to compare with the study.`);
    }
  }
}

/**
 * The study's results tables, computed: validation, training and held-out test accuracy, a row
 * per seed and a column per model (models without runs are shown as `-`, with a note).
 */
export async function showSeedTables(
  records: readonly RunOutcome[],
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
  records: readonly RunOutcome[],
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
 * The study models' finished runs on record: the committed run records of the study grid
 * (`results/study/runs/<model>_<seed>/result.json`, as `deno task sweep --out results/study` writes them),
 * never a checkpoint that happens to be on disk. Throws when they mix data.
 */
export async function studyRunsOnRecord(): Promise<RunOutcome[]> {
  const kinds = new Set(studyModelKinds());
  const records = (await readRecordsIn(join(repoPath(STUDY_DIR), "runs")))
    .filter((r) => kinds.has(r.model));
  assertSameData(records, `the study records in ${STUDY_DIR}`);
  return records;
}

/** Training accuracy, validation accuracy and the gap between them, one row per run. */
export async function showTrainValGap(records: readonly RunOutcome[]): Promise<void> {
  if (records.length === 0) {
    return console.log("No trained study models on record (run study.ipynb or 'deno task sweep').");
  }
  console.log(`Runs on record: ${describeSetups(records)}.`);
  const rows = records.map((r) => [
    modelInfo(r.model).title,
    String(r.seed),
    r.accuracy!.train.accuracy,
    r.accuracy!.val.accuracy,
    r.accuracy!.train.accuracy - r.accuracy!.val.accuracy,
  ]);
  await showTable(["model", "seed", "training", "validation", "gap"], rows, { unit: "%" });
}

/** The accuracy tables as a grouped bar chart (see {@link accuracyBars}). */
export async function showAccuracyBars(
  records: readonly RunOutcome[],
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
  records: readonly Pick<RunOutcome, "model" | "seed" | "history">[],
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
 * The finished runs of the sweep's `results.json` (its `runs`, the report's rows of the grid),
 * with the sweep's configuration.
 *
 * @returns The records, or `undefined` when the file does not exist.
 */
export async function readSweepResults(path: string): Promise<RunOutcome[] | undefined> {
  const parsed = await readJsonFile<{ config?: unknown; runs?: unknown }>(path);
  if (parsed === undefined) return undefined;
  if (!isObject(parsed) || !Array.isArray(parsed.runs)) {
    throw new Error(`Cannot read ${path}: expected the sweep's results, an object with 'runs'`);
  }
  const shared = isObject(parsed.config) ? parsed.config : {};
  return parsed.runs.map((run, i) => parseRun(run, `${path} run ${i + 1}`, shared))
    .filter((r): r is RunOutcome => r !== undefined);
}

/** The per-epoch history saved in a checkpoint's metadata (empty when there is none). */
export function checkpointHistory(meta: Record<string, unknown>): EpochRecord[] {
  return Array.isArray(meta.history) ? meta.history as EpochRecord[] : [];
}

/**
 * What the tables need of one run as a file records it (a row of the sweep's `results.json`, or
 * a checkpoint's `digitsum.json` with its `model` and `seed`), or `undefined` when it did not
 * finish. `shared`: the sweep's configuration (a row's own `epochs` win over it).
 */
function parseRun(
  run: unknown,
  where: string,
  shared: Record<string, unknown> = {},
): RunOutcome | undefined {
  if (!isObject(run)) throw new Error(`Cannot read ${where}: not an object`);
  const own = isObject(run.config) ? run.config : {};
  const model = run.model ?? run.kind ?? own.model;
  const seed = run.seed ?? own.seed;
  if (typeof model !== "string" || typeof seed !== "number") {
    throw new Error(`Cannot read ${where}: missing 'model' or 'seed'`);
  }
  if (run.status !== undefined && run.status !== "done") return undefined;
  const accuracy = run.accuracy;
  const scored = (split: unknown) => isObject(split) && typeof split.accuracy === "number";
  if (!isObject(accuracy) || !scored(accuracy.train) || !scored(accuracy.val)) return undefined;
  const setup = Object.fromEntries(
    ["epochs", "batchSize", "learningRate", "trainFraction", "limit", "dataDir"]
      .filter((key) => typeof shared[key] === "number" || typeof shared[key] === "string")
      .map((key) => [key, shared[key]]),
  );
  const config = studyConfig(model, {
    ...setup,
    ...own,
    ...(typeof run.epochs === "number" ? { epochs: run.epochs } : {}),
    seed,
  } as Partial<RunConfig>);
  return {
    model,
    seed,
    config,
    accuracy: accuracy as unknown as RunAccuracy,
    history: Array.isArray(run.history) ? run.history as EpochRecord[] : undefined,
  };
}
