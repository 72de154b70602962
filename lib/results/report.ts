/**
 * Results of a sweep directory (lib/sweep/) as the study's tables and a self-contained report:
 * `RESULTS.md`, `results.json`, `report.html` (inline SVG, opens offline) and `figures/*.svg|png`.
 *
 * Everything is computed from the run directories alone, so a report can be rebuilt at any time
 * (`deno task sweep --report-only`) and merged shards give the same tables as one sweep.
 *
 * @module
 */
import { join } from "node:path";
import { COURSE_IMAGE_FILES } from "../data/generate.ts";
import {
  barChart,
  confusionMatrix,
  FontNotFoundError,
  heatmap,
  imageGrid,
  lineChart,
  PALETTE,
  svgToPng,
} from "./charts.ts";
import { IMAGE_HEIGHT, IMAGE_WIDTH, NUM_SUMS } from "../constants.ts";
import { getLoaders } from "../data/loader.ts";
import {
  ensureDir,
  exists,
  killPoint,
  removeStaleTemps,
  writeFileAtomic,
  writeJsonAtomic,
  writeTextAtomic,
} from "../io/fsutil.ts";
import { formatDuration } from "../runtime/progress.ts";
import type { EpochRecord } from "../training/train.ts";
import type { DataFingerprint } from "../data/generate.ts";
import { modelInfo } from "../models/mod.ts";
import { escapeHtml } from "../io/text.ts";
import { formatPercent, formatStats, meanRate, meanStd, plural, type Stats } from "./stats.ts";
import {
  assertSameData,
  describeData,
  readRunHistory,
  readRunRecord,
  readValPredictions,
  RUN_FILES,
  type RunRecord,
} from "./record.ts";
import {
  readSweepConfig,
  runConfigFor,
  runDir,
  SWEEP_DEFAULTS,
  type SweepConfig,
} from "../sweep/config.ts"; /** The splits of the result tables, in order. */
export const SPLITS = ["val", "train", "test"] as const;

/** One split of the tables. */
export type Split = typeof SPLITS[number];

/** Table titles per split (the study's two, plus the held-out test set). */
export const SPLIT_TITLES: Readonly<Record<Split, string>> = {
  val: "Validation Accuracy",
  train: "Training Accuracy",
  test: "Held-out Test Accuracy",
};

/** Sample validation images shown for the best run. */
const SAMPLE_IMAGES = 12;

/**
 * The original PyTorch study's published tables (overall accuracy in %, seeds 0, 10, 42), for
 * comparison in the report.
 */
export const STUDY_RESULTS: Readonly<
  Record<string, { val: readonly number[]; train: readonly number[] }>
> = {
  "cnn-regressor": { val: [11.42, 10.92, 10.65], train: [21.90, 22.22, 18.16] },
  "cnn-classifier": { val: [6.70, 8.00, 7.70], train: [52.36, 76.92, 68.08] },
  "vgg-regressor": { val: [10.23, 7.83, 9.12], train: [9.98, 8.67, 9.29] },
};

/** State of one cell of the grid. */
export type CellStatus = "done" | "skipped" | "failed" | "running" | "pending";

/**
 * One cell of the grid as reported: the fields of its {@link RunRecord} the tables use, plus the
 * state of a run that has not ended (`running`, `pending`), its epochs so far and its folder.
 */
export type RunRow =
  & Pick<
    RunRecord,
    "key" | "model" | "title" | "seed" | "reason" | "accuracy" | "params" | "seconds" | "versions"
  >
  & {
    status: CellStatus;
    /** Per-epoch history (also for unfinished runs, as far as they got). */
    history: EpochRecord[];
    epochs: number;
    /** Name of the backend that trained it. */
    backend?: string;
    /** The run directory, relative to the sweep directory. */
    dir: string;
  };

/** One results table: a row per seed, a column per model. */
export interface ResultTable {
  split: Split;
  title: string;
  /** Column headers after "Seed": model titles. */
  columns: string[];
  rows: Array<{ seed: number; values: Array<number | null>; cells: string[] }>;
  /** Per model, over the seeds that finished. */
  stats: Stats[];
}

/** The content of `results.json`. */
export interface SweepResults {
  generatedAt: string;
  config: SweepConfig;
  models: Array<{ kind: string; title: string }>;
  seeds: number[];
  runs: RunRow[];
  tables: Record<Split, ResultTable>;
  /** Key of the run with the best validation accuracy, if any finished. */
  best?: string;
  /** The data the finished runs were trained on (all the same, or collecting fails). */
  data?: DataFingerprint;
}

function cellText(row: RunRow | undefined, split: Split): { value: number | null; text: string } {
  if (!row) return { value: null, text: "—" };
  if (row.status === "done") {
    const acc = row.accuracy?.[split];
    return acc ? { value: acc.accuracy, text: formatPercent(acc.accuracy) } : {
      value: null,
      text: "n/a",
    };
  }
  if (row.status === "running") {
    return { value: null, text: `running (${row.history.length}/${row.epochs})` };
  }
  return { value: null, text: row.status };
}

/** Build one table from the runs. */
export function buildTable(
  runs: readonly RunRow[],
  split: Split,
  models: ReadonlyArray<{ kind: string; title: string }>,
  seeds: readonly number[],
): ResultTable {
  const find = (model: string, seed: number) =>
    runs.find((r) => r.model === model && r.seed === seed);
  const rows = seeds.map((seed) => {
    const cells = models.map((m) => cellText(find(m.kind, seed), split));
    return { seed, values: cells.map((c) => c.value), cells: cells.map((c) => c.text) };
  });
  const stats = models.map((_, j) =>
    meanStd(rows.map((r) => r.values[j]).filter((v): v is number => v !== null))
  );
  return { split, title: SPLIT_TITLES[split], columns: models.map((m) => m.title), rows, stats };
}

/**
 * Read a sweep directory: its `config.json` and every run of its grid.
 *
 * @param out The sweep directory.
 */
export async function collectResults(out: string): Promise<SweepResults> {
  const config = await readSweepConfig(join(out, "config.json"));
  if (!config) {
    throw new Error(
      `Cannot report on ${out}: ${join(out, "config.json")} is missing (not a sweep directory)`,
    );
  }
  const models = config.models.map((kind) => ({ kind, title: modelInfo(kind).title }));
  const runs: RunRow[] = [];
  const records: RunRecord[] = [];
  for (const model of config.models) {
    for (const seed of config.seeds) {
      const dir = runDir(out, model, seed);
      const record = await readRunRecord(dir);
      if (record?.status === "done") records.push(record);
      const history = await readRunHistory(dir);
      runs.push(rowOf(model, seed, record, history, config, dir, out));
    }
  }
  assertSameData(records, `the runs of ${out}`);
  const tables = Object.fromEntries(
    SPLITS.map((s) => [s, buildTable(runs, s, models, config.seeds)]),
  ) as Record<Split, ResultTable>;
  const done = runs.filter((r) => r.status === "done" && r.accuracy);
  const best = done.length
    ? done.reduce((a, b) => (b.accuracy!.val.accuracy > a.accuracy!.val.accuracy ? b : a))
    : undefined;
  return {
    generatedAt: new Date().toISOString(),
    config: { ...config, out },
    models,
    seeds: config.seeds,
    runs,
    tables,
    best: best?.key,
    data: records[0]?.data,
  };
}

function rowOf(
  model: string,
  seed: number,
  record: RunRecord | undefined,
  history: EpochRecord[],
  config: SweepConfig,
  dir: string,
  out: string,
): RunRow {
  const base = {
    key: `${model}_${seed}`,
    model,
    title: modelInfo(model).title,
    seed,
    epochs: runConfigFor(config, model, seed).epochs, // a model's recipe may set its own
    dir: dir.startsWith(out) ? dir.slice(out.length).replace(/^[\\/]+/, "") : dir,
  };
  if (!record) {
    return { ...base, status: history.length ? "running" : "pending", history };
  }
  return {
    ...base,
    status: record.status,
    reason: record.reason,
    accuracy: record.accuracy,
    history: record.history ?? history,
    params: record.params,
    seconds: record.seconds,
    backend: record.backend?.name,
    versions: record.versions,
  };
}

/** Markdown for one table (the study's layout plus a mean ± std row). */
export function tableMarkdown(table: ResultTable): string {
  const header = `| Seed | ${table.columns.join(" | ")} |`;
  const rule = `|------|${table.columns.map((c) => "-".repeat(c.length + 2)).join("|")}|`;
  const rows = table.rows.map((r) => `| ${r.seed} | ${r.cells.join(" | ")} |`);
  const stats = `| mean ± std | ${table.stats.map(formatStats).join(" | ")} |`;
  return [header, rule, ...rows, stats].join("\n");
}

/** Notes for skipped, failed and unfinished runs (one line per reason). */
export function statusNotes(results: SweepResults): string[] {
  const groups = new Map<string, string[]>();
  for (const run of results.runs) {
    if (run.status === "done") continue;
    const label = run.status === "skipped" || run.status === "failed"
      ? `${run.status}: ${run.reason ?? "no reason recorded"}`
      : run.status === "running"
      ? "unfinished (interrupted or still running; run the sweep again to resume)"
      : "not run yet";
    groups.set(label, [...(groups.get(label) ?? []), `${run.title} seed ${run.seed}`]);
  }
  return [...groups].map(([label, names]) => `${names.join(", ")} — ${label}`);
}

/** Whether the sweep deviates from the study's setup (then its numbers are not comparable). */
function setupWarning(config: SweepConfig): string | undefined {
  const parts: string[] = [];
  if (config.limit !== null) parts.push(`only ${config.limit} training images per run`);
  if (config.epochs !== SWEEP_DEFAULTS.epochs) {
    parts.push(`${config.epochs} epoch(s) instead of ${SWEEP_DEFAULTS.epochs}`);
  }
  if (config.batchSize !== SWEEP_DEFAULTS.batchSize) parts.push(`batch size ${config.batchSize}`);
  if (config.learningRate !== SWEEP_DEFAULTS.learningRate) {
    parts.push(`learning rate ${config.learningRate}`);
  }
  if (config.testLimit !== null) {
    parts.push(`test accuracy on the first ${config.testLimit} test images`);
  }
  if (config.trainFraction !== SWEEP_DEFAULTS.trainFraction) {
    parts.push(`train fraction ${config.trainFraction}`);
  }
  return parts.length
    ? `This sweep is not the study's setup (${
      parts.join(", ")
    }): its numbers are not comparable with the study's.`
    : undefined;
}

/**
 * The line naming the models of a sweep that train with their own recipe's epochs or learning rate
 * (the sweep keeps them unless it changes the study's values), or undefined when none does.
 */
export function ownRecipeLine(
  config: SweepConfig,
  models: ReadonlyArray<{ kind: string; title: string }>,
): string | undefined {
  const own = models.map((m) => ({ m, run: runConfigFor(config, m.kind, config.seeds[0] ?? 0) }))
    .filter(({ run }) => run.epochs !== config.epochs || run.learningRate !== config.learningRate);
  if (own.length === 0) return undefined;
  const which = own.map(({ m, run }) =>
    `${m.title}: ${plural(run.epochs, "epoch")}, lr ${run.learningRate}`
  );
  return `Own recipe (see docs/BEYOND.md): ${which.join("; ")}.`;
}

/** The whole `RESULTS.md`. */
export function resultsMarkdown(results: SweepResults): string {
  const c = results.config;
  const lines = [
    "# Sweep results",
    "",
    `Generated ${results.generatedAt} from \`${c.out}\`. Overall accuracy (correct / images) of ` +
    `each model and seed after training; \`mean ± std\` over the seeds that finished ` +
    `(sample standard deviation, n - 1).`,
    "",
    `Setup: ${
      plural(c.epochs, "epoch")
    }, batch ${c.batchSize}, Adam lr ${c.learningRate}, train fraction ` +
    `${c.trainFraction}, ${
      c.limit === null ? "all images" : `limit ${c.limit} training images`
    }, ` +
    `${c.testLimit === null ? "all test images" : `first ${c.testLimit} test images`}, ` +
    `data \`${c.dataDir}\`` + (results.data ? `: ${describeData(results.data)}.` : "."),
  ];
  const own = ownRecipeLine(c, results.models);
  if (own) lines.push("", own);
  const warning = setupWarning(c);
  if (warning) lines.push("", `> **Note:** ${warning}`);
  for (const split of SPLITS) {
    lines.push("", `## ${results.tables[split].title}`, "", tableMarkdown(results.tables[split]));
  }
  const notes = statusNotes(results);
  if (notes.length) lines.push("", "## Not finished", "", ...notes.map((n) => `- ${n}`));
  lines.push("", "## Runs", "", "| Run | Status | Epochs | Time | Train images/s | Backend |");
  lines.push("|-----|--------|--------|------|----------------|---------|");
  for (const r of results.runs) {
    const rate = meanRate(r.history);
    lines.push(
      `| ${r.title} seed ${r.seed} | ${r.status} | ${r.history.length}/${r.epochs} | ` +
        `${r.seconds !== undefined ? formatDuration(r.seconds) : "—"} | ` +
        `${Number.isFinite(rate) ? rate.toFixed(1) : "—"} | ${r.backend ?? "—"} |`,
    );
  }
  return lines.join("\n") + "\n";
}

/** Why a model has no training curves. */
function noCurvesReason(results: SweepResults, model: string): string {
  const runs = results.runs.filter((r) => r.model === model);
  const skipped = runs.find((r) => r.status === "skipped" || r.status === "failed");
  if (skipped && runs.every((r) => r.status === skipped.status)) {
    return `${skipped.status}: ${skipped.reason ?? "no reason recorded"}`;
  }
  return "no epoch finished yet.";
}

/** Figures of a report, as SVG strings keyed by file stem. */
export interface ReportFigures {
  svgs: Map<string, { title: string; svg: string }>;
  /** Why the sample images are missing, if they are. */
  samplesNote?: string;
}

/** Draw every figure of the report. */
// Long because: one block per figure of the report (accuracy bars, curves per model, confusion, samples), in report order.
export async function buildFigures(results: SweepResults, out: string): Promise<ReportFigures> {
  const svgs = new Map<string, { title: string; svg: string }>();
  // Accuracy bars: mean ± std per model, one bar per split.
  const splitNames: Record<Split, string> = {
    train: "train",
    val: "validation",
    test: "held-out test",
  };
  const splitOrder: Split[] = ["train", "val", "test"];
  // Seeds with a finished run; models with none have no bars, and the subtitle names them.
  const finished = [...new Set(results.runs.filter((r) => r.status === "done").map((r) => r.seed))]
    .sort((a, b) => a - b);
  const unrun = results.models.filter((_, j) => results.tables.val.stats[j].n === 0)
    .map((m) => m.title);
  svgs.set("accuracy", {
    title: "Accuracy by model",
    svg: barChart(
      results.models.map((m) => m.title),
      splitOrder.map((split, i) => ({
        name: splitNames[split],
        values: results.tables[split].stats.map((s) => s.mean),
        errors: results.tables[split].stats.map((s) => s.std),
        color: PALETTE[i],
      })),
      {
        title: "Overall accuracy by model",
        subtitle: `${
          finished.length > 1 ? `mean ± std over seeds ${finished.join(", ")}` : `seed ${finished}`
        }${unrun.length ? `; not run: ${unrun.join(", ")}` : ""}`,
        yLabel: "accuracy",
        yUnit: "%",
      },
    ),
  });
  // Training curves per model: loss and validation accuracy, one line per seed.
  for (const model of results.models) {
    const runs = results.runs.filter((r) => r.model === model.kind && r.history.length);
    if (!runs.length) continue;
    const series = (pick: (e: EpochRecord) => number) =>
      runs.map((r, i) => ({
        name: `seed ${r.seed}`,
        x: r.history.map((e) => e.epoch),
        y: r.history.map(pick),
        color: PALETTE[i % PALETTE.length],
      }));
    svgs.set(`curves_${model.kind}_loss`, {
      title: `${model.title}: training loss`,
      svg: lineChart(series((e) => e.trainLoss), {
        title: `${model.title}: training loss`,
        subtitle: modelInfo(model.kind).task === "regression"
          ? "mean MSE over the epoch's batches"
          : "mean cross entropy over the epoch's batches",
        xLabel: "epoch",
        yLabel: "train loss",
        width: 560,
        height: 340,
      }),
    });
    svgs.set(`curves_${model.kind}_val`, {
      title: `${model.title}: validation accuracy`,
      svg: lineChart(series((e) => e.valAccuracy), {
        title: `${model.title}: validation accuracy`,
        subtitle: "mean over validation batches of each batch's % correct (the study's)",
        xLabel: "epoch",
        yLabel: "val accuracy",
        yUnit: "%",
        width: 560,
        height: 340,
      }),
    });
  }
  // Confusion and samples of the best run.
  let samplesNote: string | undefined;
  const best = results.runs.find((r) => r.key === results.best);
  if (best) {
    const predictionsFile = await readValPredictions(join(out, best.dir));
    if (predictionsFile) {
      const { predictions, labels } = predictionsFile;
      svgs.set("confusion_best", {
        title: `Confusion on validation: ${best.title} seed ${best.seed}`,
        svg: heatmap(confusionMatrix(predictions, labels, NUM_SUMS), {
          title: `Validation confusion: ${best.title} seed ${best.seed}`,
          subtitle: `${labels.length} images; best validation accuracy ` +
            `${formatPercent(best.accuracy!.val.accuracy)}; the dashed line is a correct sum`,
          xLabel: "predicted sum (clamped to 0..36)",
          yLabel: "true sum",
          diagonal: true,
        }),
      });
      const samples = await sampleImages(results, best, predictions, labels);
      if ("note" in samples) samplesNote = samples.note;
      else {
        svgs.set("samples_best", {
          title: `Validation samples: ${best.title} seed ${best.seed}`,
          svg: samples.svg,
        });
      }
    } else {
      samplesNote = `${join(out, best.dir, RUN_FILES.predictions)} is missing`;
    }
  } else {
    samplesNote = "no run has finished yet";
  }
  return { svgs, samplesNote };
}

/** The first validation images of the best run with their true and predicted sums. */
async function sampleImages(
  results: SweepResults,
  best: RunRow,
  predictions: readonly number[],
  labels: readonly number[],
): Promise<{ svg: string } | { note: string }> {
  const c = results.config;
  for (const file of COURSE_IMAGE_FILES) {
    if (!(await exists(join(c.dataDir, file)))) {
      return { note: `they need the data set in ${c.dataDir} (${file} is missing)` };
    }
  }
  try {
    const { val } = await getLoaders(c.trainFraction, c.batchSize, {
      seed: best.seed,
      dataDir: c.dataDir,
      limit: c.limit ?? undefined,
    });
    const count = Math.min(SAMPLE_IMAGES, val.size, predictions.length);
    const trueLabels = val.labels();
    for (let i = 0; i < count; i++) {
      if (Math.round(trueLabels[i]) !== labels[i]) {
        return {
          note: `the data in ${c.dataDir} no longer matches the run's validation split ` +
            `(image ${i}: sum ${trueLabels[i]} here, ${labels[i]} in the run)`,
        };
      }
    }
    const svg = await imageGrid(
      Array.from({ length: count }, (_, i) => ({
        pixels: val.imageAt(i).slice(),
        width: IMAGE_WIDTH,
        height: IMAGE_HEIGHT,
        caption: `sum ${labels[i]} · predicted ${predictions[i]}`,
        captionColor: predictions[i] === labels[i] ? "#007a55" : "#c0392b",
      })),
      {
        columns: 4,
        scale: 1.5,
        title: `First ${count} validation images, ${best.title} seed ${best.seed} ` +
          `(green: right, red: wrong)`,
      },
    );
    return { svg };
  } catch (error) {
    return { note: `unavailable: ${(error as Error).message}` };
  }
}

/**
 * Make the ids and class names of an ECharts SVG unique within a page: ECharts numbers them per
 * process (`zr3-c0`), and inline SVGs share one id and style namespace.
 */
function scopeSvgIds(svg: string, prefix: string): string {
  return svg.replace(/\bzr(\d+)-/g, `${prefix}zr$1-`).replace(/^<\?xml[^>]*>\s*/, "");
}

function htmlTable(table: ResultTable): string {
  const head = `<tr><th>Seed</th>${
    table.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")
  }</tr>`;
  const rows = table.rows.map((r) =>
    `<tr><td>${r.seed}</td>${
      r.cells.map((c, j) =>
        `<td class="${r.values[j] === null ? "missing" : "num"}">${escapeHtml(c)}</td>`
      ).join("")
    }</tr>`
  );
  const stats = `<tr class="stats"><td>mean ± std</td>${
    table.stats.map((s) => `<td class="num">${escapeHtml(formatStats(s))}</td>`).join("")
  }</tr>`;
  return `<table><thead>${head}</thead><tbody>${rows.join("")}${stats}</tbody></table>`;
}

function studyTable(results: SweepResults): string {
  const models = results.models.filter((m) => STUDY_RESULTS[m.kind]);
  if (!models.length) return "";
  const ours = (kind: string, split: "val" | "train") => {
    const j = results.models.findIndex((m) => m.kind === kind);
    return formatStats(results.tables[split].stats[j]);
  };
  const study = (kind: string, split: "val" | "train") =>
    formatStats(meanStd([...STUDY_RESULTS[kind][split]]));
  const rows = models.map((m) =>
    `<tr><td>${escapeHtml(m.title)}</td><td class="num">${study(m.kind, "val")}</td>` +
    `<td class="num">${ours(m.kind, "val")}</td><td class="num">${study(m.kind, "train")}</td>` +
    `<td class="num">${ours(m.kind, "train")}</td></tr>`
  );
  return `<table><thead><tr><th>Model</th><th>Study val</th><th>This sweep val</th>` +
    `<th>Study train</th><th>This sweep train</th></tr></thead><tbody>${
      rows.join("")
    }</tbody></table>`;
}

/**
 * The whole `report.html`: self-contained (inline SVG and PNG data), no scripts, no network.
 *
 * @param results From {@link collectResults}.
 * @param figures From {@link buildFigures}.
 * @param options `png`: whether `figures/*.png` exist (to link them).
 */
// Long because: the page's HTML template, in page order; the pieces it fills in are functions of their own.
export function reportHtml(
  results: SweepResults,
  figures: ReportFigures,
  options: { png?: boolean } = {},
): string {
  const c = results.config;
  let figureCount = 0;
  const figure = (stem: string, wide = false) => {
    const f = figures.svgs.get(stem);
    if (!f) return "";
    figureCount += 1;
    return `<figure class="${wide ? "wide" : ""}">${scopeSvgIds(f.svg, `f${figureCount}`)}` +
      `<figcaption>${escapeHtml(f.title)} · <a href="figures/${stem}.svg">svg</a>` +
      (options.png ? ` · <a href="figures/${stem}.png">png</a>` : "") +
      `</figcaption></figure>`;
  };
  const warning = setupWarning(c);
  const notes = statusNotes(results);
  const done = results.runs.filter((r) => r.status === "done");
  const totalSeconds = done.reduce((n, r) => n + (r.seconds ?? 0), 0);
  const backends = [...new Set(done.map((r) => r.backend).filter(Boolean))].join(", ") || "—";
  const v = done[0]?.versions ?? {};
  const versions = [
    v.deno ? `Deno ${v.deno}` : "",
    v["tfjs-core"] ?? v.tfjs ? `TensorFlow.js ${v["tfjs-core"] ?? v.tfjs}` : "",
  ].filter(Boolean).join(", ") || "—";
  const curves = results.models.map((m) =>
    figures.svgs.has(`curves_${m.kind}_loss`)
      ? `<div class="pair">${figure(`curves_${m.kind}_loss`)}${
        figure(`curves_${m.kind}_val`)
      }</div>`
      : `<p class="note">${escapeHtml(m.title)}: ${escapeHtml(noCurvesReason(results, m.kind))}</p>`
  ).join("\n");
  const runRows = results.runs.map((r) => {
    const rate = meanRate(r.history);
    return `<tr><td>${
      escapeHtml(r.title)
    }</td><td>${r.seed}</td><td class="status-${r.status}">${r.status}</td>` +
      `<td class="num">${r.history.length}/${r.epochs}</td>` +
      `<td class="num">${r.seconds !== undefined ? formatDuration(r.seconds) : "—"}</td>` +
      `<td class="num">${Number.isFinite(rate) ? rate.toFixed(1) : "—"}</td>` +
      `<td class="num">${r.params !== undefined ? r.params.toLocaleString("en-US") : "—"}</td>` +
      `<td>${escapeHtml(r.backend ?? "—")}</td><td><code>${escapeHtml(r.dir)}</code></td></tr>`;
  }).join("");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>digitsum sweep report</title>
<style>
  body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; margin: 2rem auto; max-width: 1160px;
         padding: 0 1rem; color: #222; line-height: 1.45; }
  h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
  .meta { color: #555; font-size: 0.92rem; }
  .warning { background: #fff4e5; border-left: 4px solid #E69F00; padding: 0.6rem 0.9rem; }
  table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.92rem; }
  th, td { border: 1px solid #d9d9d9; padding: 0.3rem 0.7rem; text-align: left; }
  th { background: #f3f6fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.missing { color: #888; font-style: italic; text-align: center; }
  tr.stats td { font-weight: bold; background: #fafafa; }
  .tables { display: flex; flex-wrap: wrap; gap: 0 2.2rem; }
  .tables h3 { margin: 0.6rem 0 0; font-size: 1rem; }
  figure { margin: 0.6rem 0; } figure svg { max-width: 100%; height: auto; }
  figcaption { font-size: 0.8rem; color: #666; }
  .pair { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; }
  .note { color: #555; font-style: italic; }
  .status-done { color: #007a55; } .status-skipped, .status-running { color: #b36b00; }
  .status-failed { color: #c0392b; } .status-pending { color: #888; }
  code { font-size: 0.85em; }
</style>
</head>
<body>
<h1>digitsum sweep report</h1>
<p class="meta">Generated ${escapeHtml(results.generatedAt)} from <code>${
    escapeHtml(c.out)
  }</code> ·
${results.models.length} models × ${results.seeds.length} seeds (${results.seeds.join(", ")}) ·
${
    plural(c.epochs, "epoch")
  }, batch ${c.batchSize}, Adam lr ${c.learningRate}, train fraction ${c.trainFraction},
${c.limit === null ? "all images" : `limit ${c.limit} training images`}, data <code>${
    escapeHtml(c.dataDir)
  }</code> ·
${done.length}/${results.runs.length} runs finished, ${formatDuration(totalSeconds)} of training ·
backend ${escapeHtml(backends)} · ${escapeHtml(versions)}</p>
${warning ? `<p class="warning">${escapeHtml(warning)}</p>` : ""}
<h2>Results across seeds</h2>
<p>Overall accuracy (correct / images) after the last epoch; the last row is the mean ± sample
standard deviation over the seeds that finished.</p>
<div class="tables">
${
    SPLITS.map((s) =>
      `<div><h3>${results.tables[s].title}</h3>${htmlTable(results.tables[s])}</div>`
    ).join("\n")
  }
</div>
${notes.length ? `<ul>${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>` : ""}
<h3>Compared with the original PyTorch study (mean ± std over seeds 0, 10, 42)</h3>
${studyTable(results)}
${figure("accuracy", true)}
<h2>Training curves</h2>
<p>Per epoch: the mean training loss over the epoch's batches, and the validation accuracy as the
study printed it (the mean over validation batches of each batch's percentage correct).</p>
${curves}
<h2>Best run</h2>
${
    results.best
      ? `<p>${escapeHtml(results.runs.find((r) => r.key === results.best)!.title)} seed ${
        results.runs.find((r) => r.key === results.best)!.seed
      } has the best validation accuracy.</p>`
      : ""
  }
${figure("confusion_best")}
${figure("samples_best", true)}
${
    figures.samplesNote
      ? `<p class="note">Sample images: ${escapeHtml(figures.samplesNote)}</p>`
      : ""
  }
<h2>Runs</h2>
<table><thead><tr><th>Model</th><th>Seed</th><th>Status</th><th>Epochs</th><th>Time</th>
<th>Train images/s</th><th>Parameters</th><th>Backend</th><th>Directory</th></tr></thead>
<tbody>${runRows}</tbody></table>
</body>
</html>
`;
}

/** Options of {@link writeReport}. */
export interface ReportOptions {
  /** Line printer (default `console.log`). */
  log?: (line: string) => void;
  /** Also rasterise every figure to PNG (default true; skipped with a message when no font). */
  png?: boolean;
}

/** What {@link writeReport} wrote. */
export interface ReportOutput {
  results: SweepResults;
  /** Paths of the written files. */
  files: string[];
  /** Why PNG figures were not written, if they were not. */
  pngError?: string;
}

/**
 * Write `RESULTS.md`, `results.json`, `report.html` and `figures/*.svg|png` for a sweep
 * directory, atomically, from its run directories.
 *
 * @param out The sweep directory.
 * @param options Logging and PNG output.
 */
export async function writeReport(out: string, options: ReportOptions = {}): Promise<ReportOutput> {
  const log = options.log ?? console.log;
  const results = await collectResults(out);
  // Temp files of a report writer that was killed (only those of processes gone from here).
  await removeStaleTemps(out, { deadOnly: true });
  await removeStaleTemps(join(out, "figures"), { deadOnly: true });
  const files: string[] = [];
  const write = async (name: string, data: string | Uint8Array) => {
    const path = join(out, name);
    if (typeof data === "string") await writeTextAtomic(path, data);
    else await writeFileAtomic(path, data);
    files.push(path);
  };
  await write("RESULTS.md", resultsMarkdown(results));
  killPoint("report");
  await writeJsonAtomic(join(out, "results.json"), results);
  files.push(join(out, "results.json"));
  const figures = await buildFigures(results, out);
  await ensureDir(join(out, "figures"));
  let pngError: string | undefined;
  for (const [stem, { svg }] of figures.svgs) {
    await write(join("figures", `${stem}.svg`), svg);
    if (options.png === false || pngError) continue;
    try {
      await write(join("figures", `${stem}.png`), await svgToPng(svg, { scale: 1.5 }));
    } catch (error) {
      if (!(error instanceof FontNotFoundError)) throw error;
      pngError = error.message;
      log(`PNG figures skipped: ${error.message}`);
    }
  }
  await write(
    "report.html",
    reportHtml(results, figures, { png: options.png !== false && !pngError }),
  );
  return { results, files, pngError };
}
