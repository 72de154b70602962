/**
 * Notebook-side helpers, shared by every notebook in `notebooks/`: one quick-mode switch
 * (`DIGITSUM_QUICK=1`), repository-root paths (the Deno kernel's working directory is the
 * notebook's folder), rich display of SVG, tables and images, live training progress, and
 * the accuracy tables of the results-across-seeds cells.
 *
 * Outside a Jupyter kernel every display helper prints a plain-text stand-in (or, with
 * `DIGITSUM_PLOT=window`, opens charts in nodeplotlib's window), so the same code runs under
 * `deno run` and `deno test`.
 *
 * Inside the Deno kernel the helpers also fix two things a notebook user meets: output printed
 * at the end of a cell lands in that cell ({@link installCellEndHook}), and Kernel > Interrupt
 * stops a training cell after its current batch, keeping the model so that running the cell
 * again resumes ({@link trainInNotebook}, {@link runInNotebook}).
 *
 * @module
 */
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, normalize, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import type { Layout, Plot } from "nodeplotlib";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  DEFAULT_MODELS_DIR,
  EPOCHS,
  IMAGE_HEIGHT,
  IMAGE_SIZE,
  IMAGE_WIDTH,
  LEARNING_RATE,
  NUM_SUMS,
  TRAIN_FRACTION,
} from "../constants.ts";
import {
  barChart,
  type BarChartOptions,
  type BarSeries,
  type ChartOptions,
  confusionMatrix,
  DEFAULT_HEIGHT,
  FONT_FAMILY,
  FontNotFoundError,
  heatmap,
  type HeatmapOptions,
  lineChart,
  type LineChartOptions,
  type LineSeries,
  PALETTE,
  svgToPng,
} from "../results/charts.ts";
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
  studyConfig,
} from "../training/experiment.ts";
import { encodePng } from "../io/png.ts";
import { type BatchProgress, jupyter, ProgressBar } from "../runtime/progress.ts";
import { restoreRngState, type RngState, rngState } from "../runtime/seed.ts";
import {
  type EpochRecord,
  evaluateAccuracy,
  formatOverallLine,
  type TorchAdam,
  trainModel,
  type UnfinishedEpoch,
} from "../training/train.ts";
import { vggWeightsPath } from "../models/vgg.ts";
import { explainBatch, type Explanation } from "../models/sumnet/mod.ts";
import { generateComposites, loadMnist } from "../data/generate.ts";
import { type BatchSource } from "../data/batch.ts";
import { modelInfo } from "../models/mod.ts";
import { base64, dataUri, escapeHtml } from "../io/text.ts";

/** Environment variable that switches every notebook to quick mode (`1`) or full mode (`0`). */
export const QUICK_ENV = "DIGITSUM_QUICK";
/** Training images per run in quick mode (validation gets a quarter as many). */
export const QUICK_LIMIT = 512;
/** Epochs per run in quick mode. */
export const QUICK_EPOCHS = 1;
/** Held-out test images scored per model in quick mode. */
export const QUICK_TEST_LIMIT = 256;
/** The seed of the study's notebook. */
export const NOTEBOOK_SEED = 42;
/** Where quick-mode checkpoints go, so that they never replace real ones in `trained_models/`. */
export const QUICK_MODELS_DIR = "runs/notebook_quick/trained_models";
/** The sweep's machine-readable results, read by the results-across-seeds cells. */
export const SWEEP_RESULTS = "runs/sweep/results.json";
/** Environment variable asking for nodeplotlib's interactive window (`window`). */
export const PLOT_ENV = "DIGITSUM_PLOT";

/** Absolute path of the repository root (computed from this file, not the working directory). */
export const REPO_ROOT: string = normalize(fileURLToPath(new URL("../../", import.meta.url)))
  .replace(/[\\/]$/, "");

/** An absolute path inside the repository, e.g. `repoPath("data")`; absolute paths stay. */
export function repoPath(...parts: string[]): string {
  return resolve(REPO_ROOT, ...parts);
}

/** A path relative to the repository root, for printing (absolute when outside it). */
export function displayPath(path: string): string {
  const rel = relative(REPO_ROOT, path);
  return rel.startsWith("..") || isAbsolute(rel) ? path : rel || ".";
}

function readEnv(name: string, env?: Record<string, string | undefined>): string | undefined {
  if (env) return env[name];
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission: defaults apply
  }
}

/**
 * Whether quick mode is on. Accepts `1`/`true`/`yes`/`on` and `0`/`false`/`no`/`off`/empty;
 * anything else throws, naming the variable.
 *
 * @param env Variables to read instead of the process environment (for tests).
 */
export function isQuickMode(env?: Record<string, string | undefined>): boolean {
  const raw = readEnv(QUICK_ENV, env);
  const value = (raw ?? "").trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["", "0", "false", "no", "off"].includes(value)) return false;
  throw new Error(`${QUICK_ENV} must be 1 (quick) or 0 (full), got '${raw}'`);
}

/**
 * Everything a notebook needs to know about the run it is part of: the run configuration shared
 * by every model of the notebook (`dataDir` absolute), plus the notebook's own paths.
 */
export interface NotebookSettings extends Omit<RunConfig, "model"> {
  /** Quick mode: a small subset and {@link QUICK_EPOCHS} epoch(s) per run. */
  quick: boolean;
  /** Absolute checkpoint directory (`<repo>/trained_models`; a scratch one in quick mode). */
  modelsDir: string;
  /** Absolute path of the sweep's `results.json`. */
  sweepResults: string;
  /** Absolute path of the VGG11 weights (env `DIGITSUM_VGG_WEIGHTS`, default in `data/`). */
  vggWeights: string;
}

/**
 * The notebook's configuration: the study's (15 epochs, all 24,000 training images, seed 42)
 * unless `DIGITSUM_QUICK=1`, then {@link QUICK_LIMIT} images and {@link QUICK_EPOCHS} epoch.
 * Inside the Deno kernel it also installs {@link installCellEndHook} and
 * {@link listenForInterrupts} (the first cell of every notebook calls it).
 *
 * @param env Variables to read instead of the process environment (for tests).
 */
export function notebookSettings(env?: Record<string, string | undefined>): NotebookSettings {
  installCellEndHook();
  listenForInterrupts();
  const quick = isQuickMode(env);
  const dataDir = readEnv("DIGITSUM_DATA_DIR", env);
  return {
    quick,
    seed: NOTEBOOK_SEED,
    epochs: quick ? QUICK_EPOCHS : EPOCHS,
    batchSize: BATCH_SIZE,
    learningRate: LEARNING_RATE,
    trainFraction: TRAIN_FRACTION,
    limit: quick ? QUICK_LIMIT : undefined,
    backend: readEnv("DIGITSUM_BACKEND", env) || "auto",
    dataDir: repoPath(dataDir || DEFAULT_DATA_DIR),
    modelsDir: repoPath(quick ? QUICK_MODELS_DIR : DEFAULT_MODELS_DIR),
    sweepResults: repoPath(SWEEP_RESULTS),
    vggWeights: repoPath(vggWeightsPath(readEnv("DIGITSUM_VGG_WEIGHTS", env))),
  };
}

/** The first cell's statement of the mode a notebook runs in. */
export function describeSettings(settings: NotebookSettings): string {
  if (settings.quick) {
    return [
      `QUICK MODE (${QUICK_ENV}=1): every run uses the first ${settings.limit} training images ` +
      `and ${settings.epochs} epoch(s).`,
      `The numbers below are a smoke test of the code path, not the study's results.`,
      `Run without ${QUICK_ENV} (or with ${QUICK_ENV}=0) for the study's configuration.`,
    ].join("\n");
  }
  return [
    `FULL MODE: the study's configuration (all training images, ${settings.epochs} epochs, ` +
    `batch ${settings.batchSize}, Adam lr ${settings.learningRate}, seed ${settings.seed}).`,
    `Set ${QUICK_ENV}=1 before starting Jupyter for a quick smoke run.`,
  ].join("\n");
}

/**
 * The configuration `deno task train --model <kind>` would use, with this notebook's seed, data
 * and backend: a model's own recipe (epochs, learning rate) in full mode, and
 * {@link QUICK_EPOCHS} epoch on {@link QUICK_LIMIT} images in quick mode.
 */
export function modelRunConfig(model: string, settings: NotebookSettings): RunConfig {
  return studyConfig(model, {
    seed: settings.seed,
    limit: settings.limit,
    backend: settings.backend,
    dataDir: settings.dataDir,
    ...(settings.quick ? { epochs: settings.epochs } : {}),
  });
}

/**
 * The {@link RunConfig} of a model under these settings: what `deno task train` would use with
 * the same seed, epochs and limit, so the notebook's numbers match the CLI's.
 */
export function notebookRunConfig(
  model: string,
  settings: NotebookSettings,
  overrides: Partial<RunConfig> = {},
): RunConfig {
  return {
    model,
    seed: settings.seed,
    epochs: settings.epochs,
    batchSize: settings.batchSize,
    learningRate: settings.learningRate,
    trainFraction: settings.trainFraction,
    limit: settings.limit,
    backend: settings.backend,
    dataDir: settings.dataDir,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// Display

/**
 * A MIME bundle, e.g. `{ "image/png": base64, "text/plain": "chart" }`: text for most types,
 * a JSON object for JSON types such as {@link PLOTLY_MIME}.
 */
export type MimeBundle = Record<string, string | object>;

/** Options of {@link display}. */
export interface DisplayOptions {
  /** Per-MIME-type metadata, e.g. `{ "image/png": { width: 720, height: 400 } }`. */
  metadata?: Record<string, unknown>;
}

interface KernelWithBroadcast {
  broadcast(
    msgType: string,
    content: Record<string, unknown>,
    extra?: { metadata?: Record<string, unknown> },
  ): Promise<void>;
}

/**
 * Show a MIME bundle in the notebook, or print its `text/plain` part outside one.
 *
 * @param bundle MIME type -> content.
 * @param options Display metadata (sent with `Deno.jupyter.broadcast`, which `display` lacks).
 */
export async function display(bundle: MimeBundle, options: DisplayOptions = {}): Promise<void> {
  const kernel = jupyter();
  if (!kernel) {
    const text = bundle["text/plain"];
    console.log(typeof text === "string" ? text : `[${Object.keys(bundle).join(", ")}]`);
    return;
  }
  installCellEndHook();
  if (options.metadata) {
    await (kernel as unknown as KernelWithBroadcast).broadcast("display_data", {
      data: bundle,
      metadata: options.metadata,
      transient: {},
    });
  } else {
    await kernel.display(bundle, { raw: true });
  }
}

/**
 * How long the kernel's output gets to reach the notebook before a cell is reported finished
 * (30 ms: no output lost in 240 cells executed headless; without it 2-6 of 40-60 were).
 */
export const SETTLE_MS = 30;

function settle(ms = SETTLE_MS): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type BroadcastResult = ((executionCount: number, result: unknown) => Promise<void>) & {
  [CELL_END_HOOK]?: true;
};

/** Marks the kernel's `broadcastResult` once wrapped (shared by every copy of this module). */
const CELL_END_HOOK = Symbol.for("digitsum.cellEndHook");

/** The Deno kernel's internal Jupyter object, or `undefined` outside a kernel or when renamed. */
function kernelInternals(): { broadcastResult?: BroadcastResult } | undefined {
  const symbol = Object.getOwnPropertySymbols(Deno).find((s) => s.description === "Deno.internal");
  if (!symbol) return undefined;
  const internal = (Deno as unknown as Record<symbol, { jupyter?: unknown } | undefined>)[symbol];
  const internals = internal?.jupyter;
  return internals && typeof internals === "object"
    ? internals as { broadcastResult?: BroadcastResult }
    : undefined;
}

/**
 * Make everything a cell prints land in that cell, without an `await` at the end of each cell.
 *
 * The Deno kernel forwards `console.*` output on a separate task and reports a cell finished 5 ms
 * after its code returns, so the last lines of a cell can arrive after that and show up under the
 * next cell (or get lost when nbconvert stops listening). Before it reports a successful cell
 * finished, the kernel calls its internal `broadcastResult` (which displays the cell's value) and
 * waits for it; this wraps that call to wait {@link SETTLE_MS} first. It is installed once per
 * kernel by the first helper that runs there ({@link notebookSettings}, {@link display}, the
 * training helpers); a cell that ends with an error is not covered (the kernel skips that call),
 * so the helpers that throw settle first.
 *
 * @returns whether the hook is in place (false outside a kernel, or when a Deno release no longer
 *   has `broadcastResult`; then output behaves as before).
 */
export function installCellEndHook(): boolean {
  if (!jupyter()) return false;
  const internals = kernelInternals();
  const original = internals?.broadcastResult;
  if (!internals || typeof original !== "function") return false;
  if (original[CELL_END_HOOK]) return true;
  const wrapped: BroadcastResult = async function (
    this: unknown,
    executionCount: number,
    result: unknown,
  ) {
    await settle();
    return await original.call(this, executionCount, result);
  };
  wrapped[CELL_END_HOOK] = true;
  internals.broadcastResult = wrapped;
  return true;
}

/** Pixel scale of the PNG copy of a chart (shown at the SVG's size, so it stays sharp). */
export const CHART_PNG_SCALE = 2;

/** Options of {@link showSvg}. */
export interface ShowSvgOptions {
  /** Text shown where images cannot be (default `chart`). */
  alt?: string;
  /** Pixel scale of the PNG (default {@link CHART_PNG_SCALE}; 1 suits figures of images). */
  pngScale?: number;
  /** Also put the SVG itself into the output (default false; see {@link showSvg}). */
  vector?: boolean;
  /**
   * The same chart as a Plotly figure: it goes into the same bundle ({@link PLOTLY_MIME}), so
   * JupyterLab with Plotly's renderer shows an interactive chart where other front ends show the
   * PNG; outside a notebook, `DIGITSUM_PLOT=window` opens it in nodeplotlib's window.
   */
  figure?: PlotlyFigure;
}

/** Width and height attributes of an SVG document's root element. */
export function svgSize(svg: string): { width: number; height: number } {
  const root = svg.match(/<svg\b[^>]*>/)?.[0] ?? "";
  const width = Number(root.match(/\swidth="([\d.]+)"/)?.[1]);
  const height = Number(root.match(/\sheight="([\d.]+)"/)?.[1]);
  if (!(width > 0 && height > 0)) {
    throw new Error(`svgSize(): the <svg> element has no numeric width and height: '${root}'`);
  }
  return { width, height };
}

/**
 * Show a chart from `lib/charts.ts` in the notebook, as a PNG rendered from the SVG at twice
 * its size and displayed at its size. PNG is the one image type every front end shows: classic
 * Notebook 6 and JupyterLab hide SVG output in untrusted notebooks (any notebook you did not run
 * yourself), and nbconvert 6.5's HTML export empties inline SVGs. With `vector: true` the SVG
 * goes into the bundle too, for front ends that prefer it; with a `figure`, its Plotly figure
 * (one output either way: a front end shows one type of a bundle). Without a font for the PNG
 * (see `findFont` in `lib/charts.ts`) the SVG is shown instead, with a note.
 */
export async function showSvg(svg: string, options: ShowSvgOptions = {}): Promise<void> {
  const start = svg.trimStart();
  if (!start.startsWith("<svg") && !start.startsWith("<?xml")) {
    throw new Error(`showSvg(): expected an SVG document, got '${svg.slice(0, 40)}...'`);
  }
  const { width, height } = svgSize(svg);
  const alt = options.alt ?? "chart";
  const bundle: MimeBundle = { "text/plain": `[${alt}]` };
  if (jupyter() === undefined) {
    if (options.figure && await showInteractive([options.figure])) return;
    return await display(bundle);
  }
  if (options.figure) bundle[PLOTLY_MIME] = options.figure;
  try {
    bundle["image/png"] = base64(
      await svgToPng(svg, { scale: options.pngScale ?? CHART_PNG_SCALE }),
    );
  } catch (error) {
    if (!(error instanceof FontNotFoundError)) throw error;
    if (!fontWarned) console.log(`Charts shown as SVG only: ${error.message}`);
    fontWarned = true;
  }
  if (options.vector || !bundle["image/png"]) bundle["image/svg+xml"] = svg;
  await display(bundle, { metadata: { "image/png": { width, height } } });
}

let fontWarned = false;

/** Show PNG bytes as an image. */
export async function showPng(png: Uint8Array, alt = "image"): Promise<void> {
  const signature = [0x89, 0x50, 0x4e, 0x47];
  if (png.length < 8 || signature.some((b, i) => png[i] !== b)) {
    throw new Error(`showPng(): the bytes are not a PNG file (${png.length} bytes)`);
  }
  await display({ "image/png": base64(png), "text/plain": `[${alt}]` });
}

/** Show Markdown (with a plain-text copy for consoles). */
export async function showMarkdown(markdown: string): Promise<void> {
  await display({ "text/markdown": markdown, "text/plain": markdown });
}

/** A table cell: text, or a number shown with `decimals` decimals. */
export type Cell = string | number | null | undefined;

/** Options of the table helpers. */
export interface TableOptions {
  /** Decimals of numeric cells (default 2). */
  decimals?: number;
  /** Suffix of numeric cells, e.g. `%`. */
  unit?: string;
  /** Title shown over the table. */
  caption?: string;
}

function cellText(cell: Cell, options: TableOptions): string {
  if (cell === null || cell === undefined) return "-";
  if (typeof cell === "number") {
    return Number.isFinite(cell)
      ? `${cell.toFixed(options.decimals ?? 2)}${options.unit ?? ""}`
      : "-";
  }
  return cell;
}

function checkTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): void {
  rows.forEach((row, i) => {
    if (row.length !== headers.length) {
      throw new Error(
        `Table row ${i + 1} has ${row.length} cells, the header has ${headers.length}`,
      );
    }
  });
}

/** A GitHub-flavoured Markdown table (the study's results format). */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  options: TableOptions = {},
): string {
  checkTable(headers, rows);
  const escape = (s: string) => s.replace(/\|/g, "\\|");
  const texts = rows.map((row) => row.map((c) => escape(cellText(c, options))));
  const widths = headers.map((h, j) => Math.max(h.length, 3, ...texts.map((r) => r[j].length)));
  const line = (cells: string[]) => `| ${cells.map((c, j) => c.padEnd(widths[j])).join(" | ")} |`;
  const lines = [
    line(headers.map(escape)),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...texts.map(line),
  ];
  return (options.caption ? `**${options.caption}**\n\n` : "") + lines.join("\n");
}

/** An HTML table (numbers right-aligned). */
export function htmlTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  options: TableOptions = {},
): string {
  checkTable(headers, rows);
  const align = (c: Cell) => typeof c === "number" ? ' style="text-align:right"' : "";
  const body = rows.map((row) =>
    `<tr>${row.map((c) => `<td${align(c)}>${escapeHtml(cellText(c, options))}</td>`).join("")}</tr>`
  );
  return [
    "<table>",
    options.caption ? `<caption><b>${escapeHtml(options.caption)}</b></caption>` : "",
    `<thead><tr>${headers.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr></thead>`,
    `<tbody>${body.join("")}</tbody>`,
    "</table>",
  ].join("");
}

/** Show a table: HTML for notebooks, Markdown as the plain-text copy. */
export async function showTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  options: TableOptions = {},
): Promise<void> {
  await display({
    "text/html": htmlTable(headers, rows, options),
    "text/plain": markdownTable(headers, rows, options),
  });
}

// ---------------------------------------------------------------------------------------------
// Progress

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

// ---------------------------------------------------------------------------------------------
// Kernel > Interrupt

/**
 * The error a training cell ends with when Kernel > Interrupt stopped it (its model and finished
 * epochs are kept: running the cell again resumes), and the error of a training cell that did
 * not start because the kernel was interrupted while the cell waited in the queue.
 */
export class KernelInterrupt extends Error {
  override name = "KernelInterrupt";
  constructor(message: string) {
    super(message);
    this.stack = `${this.name}: ${message}`; // the kernel prints the stack; a trace adds nothing
  }
}

/**
 * What trainings may do after Kernel > Interrupt. The Deno kernel ignores `stop_on_error`, so
 * the cells queued behind an interrupted one still run; a training among them is refused once
 * (with a {@link KernelInterrupt}) instead of starting. Running the interrupted cell again (it
 * resumes) or running a refused cell a second time lifts that.
 */
export class InterruptLatch {
  /** An interrupt arrived that no training has acted on yet. */
  pending = false;
  #latch?: { stopped?: string; refused: Set<string> };

  /** The pending interrupt stopped the training named `key` (or arrived while none ran). */
  stopped(key?: string): void {
    this.pending = false;
    this.#latch = { stopped: key, refused: new Set() };
  }

  /** A training named `key` starts: throws a {@link KernelInterrupt} when it must not. */
  admit(key: string): void {
    if (this.pending) this.stopped(); // interrupted while no training ran
    const latch = this.#latch;
    if (!latch) return;
    if (latch.stopped === key || latch.refused.has(key)) {
      this.#latch = undefined;
      return;
    }
    latch.refused.add(key);
    const resume = latch.stopped ? `run the cell of ${latch.stopped} again to resume it, or ` : "";
    throw new KernelInterrupt(
      `${key} was not started because the kernel was interrupted: ${resume}` +
        `run this cell again to start it.`,
    );
  }
}

/** The kernel's interrupts: whether the SIGINT listener is in place, and the latch. */
const interrupts = { listening: false, latch: new InterruptLatch() };

/**
 * Let Kernel > Interrupt reach the notebook's training loops. Jupyter interrupts the Deno kernel
 * with SIGINT: its kernelspec names no `interrupt_mode`, so the default (`signal`) applies, and the
 * kernel itself answers an `interrupt_request` only with a log line. The kernel survives SIGINT
 * and runs the cell to its end; with this listener the training helpers see it and stop after the
 * current batch. Installed inside a Deno kernel only: in a terminal, Ctrl-C still ends the
 * process.
 *
 * @returns whether interrupts are heard.
 */
export function listenForInterrupts(): boolean {
  if (interrupts.listening) return true;
  if (!jupyter()) return false;
  try {
    Deno.addSignalListener("SIGINT", () => {
      interrupts.latch.pending = true;
    });
  } catch {
    return false; // a platform without SIGINT listeners
  }
  interrupts.listening = true;
  return true;
}

/**
 * Whether an interrupt asks the running training to stop. It first lets the event loop turn:
 * signal listeners run only then, and a train loop on wasm otherwise awaits nothing but
 * already-settled promises between batches.
 */
async function interruptRequested(): Promise<boolean> {
  if (!interrupts.listening) return false;
  await new Promise((resolve) => setTimeout(resolve, 0));
  return interrupts.latch.pending;
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

// ---------------------------------------------------------------------------------------------
// Study runs: accuracies and checkpoints

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

/**
 * A model's layers as a table: name, output shape (`b` = batch), parameters and their share of
 * the total. Layers without parameters are left out unless `all` is set.
 */
export async function showLayers(
  model: tf.LayersModel,
  options: { all?: boolean } = {},
): Promise<void> {
  const total = model.countParams();
  const layers = model.layers.filter((l) => options.all || l.countParams() > 0);
  const rows = layers.map((l) => [
    l.name,
    JSON.stringify(l.outputShape).replaceAll("null", "b"),
    l.countParams().toLocaleString("en-US"),
    total > 0 ? (100 * l.countParams()) / total : null,
  ]);
  await showTable(["layer", "output shape", "parameters", "share"], rows, {
    unit: "%",
    decimals: 1,
  });
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

// ---------------------------------------------------------------------------------------------
// Results across seeds

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

// ---------------------------------------------------------------------------------------------
// Interactive charts: Plotly figures (built with nodeplotlib's types) and nodeplotlib's window

/**
 * The MIME type of a Plotly figure. JupyterLab renders it as an interactive chart when Plotly's
 * renderer is installed (the `plotly` pip package bundles it), as does VS Code; other front ends
 * show the PNG of the same bundle.
 */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** A Plotly figure: traces and layout, typed as nodeplotlib's `plot(data, layout)` takes them. */
export interface PlotlyFigure {
  data: Plot[];
  layout?: Layout;
}

/** Axis and title options shared by the figure builders (the same as `lib/charts.ts` takes). */
type FigureOptions = Pick<ChartOptions, "title" | "subtitle" | "xLabel" | "yLabel" | "height">;

function figureLayout(options: FigureOptions, yUnit?: string): Layout {
  const title = options.subtitle
    ? `${options.title ?? ""}<br><sup>${options.subtitle}</sup>`
    : options.title;
  return {
    ...(title ? { title: { text: title, x: 0.02, xanchor: "left" } } : {}),
    xaxis: { title: { text: options.xLabel ?? "" } },
    yaxis: { title: { text: options.yLabel ?? "" }, ...(yUnit ? { ticksuffix: yUnit } : {}) },
    height: options.height ?? DEFAULT_HEIGHT,
    margin: { t: title ? (options.subtitle ? 72 : 48) : 16 },
    font: { family: FONT_FAMILY },
  };
}

/** A Plotly line figure from the same series and options `lineChart` takes. */
export function lineFigure(
  series: readonly LineSeries[],
  options: LineChartOptions = {},
): PlotlyFigure {
  const layout = figureLayout(options, options.yUnit);
  if (options.logY) layout.yaxis = { ...layout.yaxis, type: "log" };
  if (options.yMin !== undefined || options.yMax !== undefined) {
    layout.yaxis = { ...layout.yaxis, range: [options.yMin ?? null, options.yMax ?? null] };
  }
  const x = options.xLabel ?? "x";
  return {
    data: series.map((s, i) => ({
      type: "scatter",
      mode: (options.markers ?? s.y.length <= 30) ? "lines+markers" : "lines",
      name: s.name,
      x: s.x ? [...s.x] : s.y.map((_, j) => j + 1),
      y: s.y.map((v) => v !== null && Number.isFinite(v) ? v : null),
      line: { color: s.color ?? PALETTE[i % PALETTE.length], dash: s.dashed ? "dash" : "solid" },
      hovertemplate: `${x} %{x}: %{y:.4g}${options.yUnit ?? ""}<extra>${s.name}</extra>`,
    })),
    layout,
  };
}

/** A Plotly grouped bar figure (with error whiskers) from the same data `barChart` takes. */
export function barFigure(
  categories: readonly string[],
  series: readonly BarSeries[],
  options: BarChartOptions = {},
): PlotlyFigure {
  const layout: Layout = { ...figureLayout(options, options.yUnit), barmode: "group" };
  layout.xaxis = { ...layout.xaxis, type: "category" };
  return {
    data: series.map((s, i) => ({
      type: "bar",
      name: s.name,
      x: [...categories],
      y: [...s.values],
      marker: { color: s.color ?? PALETTE[i % PALETTE.length] },
      hovertemplate: `%{x}: %{y:.${options.decimals ?? 2}f}${options.yUnit ?? ""}` +
        `<extra>${s.name}</extra>`,
      ...(s.errors
        ? { error_y: { type: "data", array: s.errors.map((e) => e ?? 0), visible: true } }
        : {}),
    })),
    layout,
  };
}

/**
 * A Plotly heatmap from the same matrix and options `heatmap` takes: `matrix[row][column]`, rows
 * from the bottom up, zero cells left empty.
 */
export function heatmapFigure(
  matrix: readonly (readonly number[])[],
  options: HeatmapOptions = {},
): PlotlyFigure {
  const rows = matrix.length;
  const columns = rows ? matrix[0].length : 0;
  const x = options.xLabels ? [...options.xLabels] : [...Array(columns).keys()].map(String);
  const y = options.yLabels ? [...options.yLabels] : [...Array(rows).keys()].map(String);
  const colors = options.colors ?? ["#f0f5fb", "#9ecae1", "#3182bd", "#08306b"];
  const layout = figureLayout(options);
  layout.xaxis = { ...layout.xaxis, type: "category" };
  layout.yaxis = { ...layout.yaxis, type: "category" };
  const data: Plot[] = [{
    type: "heatmap",
    x,
    y,
    z: matrix.map((row) => row.map((v) => Number.isFinite(v) && v !== 0 ? v : null)),
    colorscale: colors.map((c, i): [number, string] => [i / (colors.length - 1), c]),
    ...(options.max !== undefined ? { zmin: 0, zmax: options.max } : {}),
    hovertemplate: `${options.yLabel ?? "row"} %{y}, ${options.xLabel ?? "column"} %{x}: ` +
      `%{z}<extra></extra>`,
  }];
  if (options.diagonal) {
    const n = Math.min(rows, columns);
    data.push({
      type: "scatter",
      mode: "lines",
      x: [x[0], x[n - 1]],
      y: [y[0], y[n - 1]],
      line: { color: "#D55E00", dash: "dash", width: 1 },
      hoverinfo: "skip",
      showlegend: false,
    });
  }
  return { data, layout };
}

/** Show a line chart: the PNG of `lineChart`'s SVG and its {@link lineFigure}, one bundle. */
export async function showLineChart(
  series: readonly LineSeries[],
  options: LineChartOptions & { alt?: string } = {},
): Promise<void> {
  await showSvg(lineChart(series, options), {
    alt: options.alt,
    figure: lineFigure(series, options),
  });
}

/** Show a bar chart: the PNG of `barChart`'s SVG and its {@link barFigure}, one bundle. */
export async function showBarChart(
  categories: readonly string[],
  series: readonly BarSeries[],
  options: BarChartOptions & { alt?: string } = {},
): Promise<void> {
  await showSvg(barChart(categories, series, options), {
    alt: options.alt,
    figure: barFigure(categories, series, options),
  });
}

/** Show a heatmap: the PNG of `heatmap`'s SVG and its {@link heatmapFigure}, one bundle. */
export async function showHeatmap(
  matrix: readonly (readonly number[])[],
  options: HeatmapOptions & { alt?: string } = {},
): Promise<void> {
  await showSvg(heatmap(matrix, options), {
    alt: options.alt,
    figure: heatmapFigure(matrix, options),
  });
}

/** Whether the interactive window was asked for (env `DIGITSUM_PLOT=window`). */
export function interactiveRequested(env?: Record<string, string | undefined>): boolean {
  const value = readEnv(PLOT_ENV, env);
  if (value === undefined || value === "" || value === "inline") return false;
  if (value === "window") return true;
  throw new Error(`${PLOT_ENV} must be 'window' or 'inline', got '${value}'`);
}

/** nodeplotlib's window, served offline (see {@link showInteractive}). */
export interface InteractiveWindow {
  /** The page to open. */
  url: string;
  /** Resolves when the page was closed and both servers stopped. */
  closed: Promise<void>;
}

let plotWindow: InteractiveWindow | undefined;

/**
 * Open these figures in nodeplotlib's window: only when asked for (`force`, or env
 * `DIGITSUM_PLOT=window`) and not inside a notebook (there the figures are part of each chart's
 * bundle). nodeplotlib serves its page and hands it the figures over socket.io, but the page
 * loads plotly.js from a CDN and its fonts from Google. So the page is served through a small
 * local front server that rewrites the CDN address to plotly.js from the installed npm package
 * (`plotly.js-dist-min`), drops the web fonts, and passes everything else to nodeplotlib: the
 * window works offline. The URL is printed and opened with `xdg-open` (or `open`) when present.
 * Like nodeplotlib, the process stays alive until the page is closed.
 *
 * @returns The window, or `false` when it was not asked for.
 */
export async function showInteractive(
  figures: readonly PlotlyFigure[],
  options: { force?: boolean; open?: boolean } = {},
): Promise<InteractiveWindow | false> {
  if (!options.force && !interactiveRequested()) return false;
  if (jupyter()) {
    throw new Error(
      "showInteractive(): nodeplotlib opens a browser window and cannot draw inside a notebook; " +
        "the charts' bundles carry their Plotly figures there",
    );
  }
  if (!plotWindow) {
    plotWindow = await startPlotWindow(options.open ?? true);
    plotWindow.closed.then(() => plotWindow = undefined);
  }
  const specifier = "nodeplotlib"; // imported on demand: 133 npm packages
  const { plot } = await import(specifier) as typeof import("nodeplotlib");
  for (const figure of figures) plot(figure.data, figure.layout);
  return plotWindow;
}

/** Port nodeplotlib serves on (it reads `NODEPLOTLIB_PORT` when imported). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Files of an installed npm package (installing it on demand), by its `package.json`. */
async function npmPackageDir(name: string, version: string): Promise<string> {
  // A JSON import makes Deno fetch the package into node_modules without running it.
  await import(`npm:${name}@${version}/package.json`, { with: { type: "json" } });
  const require = createRequire(import.meta.url);
  return dirname(require.resolve(`${name}/package.json`));
}

async function startPlotWindow(open: boolean): Promise<InteractiveWindow> {
  const nodeplotlibDir = await npmPackageDir("nodeplotlib", NODEPLOTLIB_VERSION);
  const plotlyDir = await npmPackageDir("plotly.js-dist-min", PLOTLY_JS_VERSION);
  const web = join(nodeplotlibDir, "src", "lib", "server", "web");
  const page = (await Deno.readTextFile(join(web, "index.html")))
    .replace(/https:\/\/cdn\.plot\.ly\/[^"']+/, "/plotly.min.js")
    .replace(/<link rel="preconnect"[^>]*>/g, "")
    .replace(/@font-face\{[^}]*fonts\.gstatic\.com[^}]*\}/g, "");
  const plotly = await Deno.readFile(join(plotlyDir, "plotly.min.js"));
  const backendPort = freePort();
  Deno.env.set("NODEPLOTLIB_PORT", String(backendPort)); // also keeps it from opening a window
  const backend = `http://127.0.0.1:${backendPort}`;
  let lastRequest = Date.now();
  let served = false;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      lastRequest = Date.now();
      const url = new URL(request.url);
      if (url.pathname === "/" || url.pathname === "/index.html") {
        served = true;
        return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
      }
      if (url.pathname === "/plotly.min.js") {
        return new Response(plotly, { headers: { "content-type": "text/javascript" } });
      }
      try {
        return await fetch(backend + url.pathname + url.search, {
          method: request.method,
          headers: request.headers,
          body: request.body,
          redirect: "manual",
        });
      } catch {
        return new Response("nodeplotlib has stopped", { status: 502 });
      }
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/`;
  // nodeplotlib stops when its page disconnects; stop the front server with it.
  const watcher = setInterval(async () => {
    if (!served || Date.now() - lastRequest < WINDOW_IDLE_MS) return;
    const alive = await fetch(`${backend}/socket.io/?EIO=4&transport=polling`)
      .then((r) => r.body?.cancel().then(() => true) ?? true, () => false);
    if (!alive) {
      clearInterval(watcher);
      await server.shutdown();
    }
  }, WINDOW_IDLE_MS);
  console.log(`Interactive charts (nodeplotlib, offline): ${url} (close the page to end)`);
  if (open) openBrowser(url);
  return { url, closed: server.finished };
}

/** How often the window's front server checks whether nodeplotlib is still running. */
const WINDOW_IDLE_MS = 1000;
/** The versions `deno.json` maps `nodeplotlib` and `plotly.js-dist-min` to. */
const NODEPLOTLIB_VERSION = "1.1.2";
const PLOTLY_JS_VERSION = "4.1.2";

function openBrowser(url: string): void {
  const command = Deno.build.os === "darwin" ? "open" : "xdg-open";
  try {
    new Deno.Command(command, { args: [url], stdout: "null", stderr: "null" }).spawn();
  } catch {
    // no desktop opener: the URL is printed
  }
}

// ---------------------------------------------------------------------------------------------
// Error analysis

/** Accuracy per true class: how many images of each class, and how many were right. */
export interface ClassAccuracy {
  /** Images per true class. */
  counts: number[];
  /** Correct predictions per true class. */
  correct: number[];
  /** Percent correct per class (`null` where there are no images). */
  accuracy: (number | null)[];
}

/**
 * Accuracy broken down by true class (e.g. by true sum 0..36).
 *
 * @param predictions Predicted class per image.
 * @param labels True class per image, each in `0..classes-1`.
 * @param classes Number of classes.
 */
export function perClassAccuracy(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
): ClassAccuracy {
  if (predictions.length !== labels.length) {
    throw new RangeError(
      `perClassAccuracy(): ${predictions.length} predictions for ${labels.length} labels`,
    );
  }
  const counts = new Array<number>(classes).fill(0);
  const correct = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i];
    if (!Number.isInteger(t) || t < 0 || t >= classes) {
      throw new RangeError(
        `perClassAccuracy(): label ${t} at index ${i} is outside 0..${classes - 1}`,
      );
    }
    counts[t] += 1;
    if (predictions[i] === t) correct[t] += 1;
  }
  const accuracy = counts.map((n, c) => n === 0 ? null : (correct[c] / n) * 100);
  return { counts, correct, accuracy };
}

/**
 * How far wrong predictions are: count of images per |predicted - true| (0 = right).
 *
 * @returns `[distance, images]` pairs, by distance.
 */
export function errorDistances(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
): [number, number][] {
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) {
    const d = Math.abs(predictions[i] - labels[i]);
    counts.set(d, (counts.get(d) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * Digit confusion from read-outs: `matrix[true][read]`, comparing digits position by position
 * (left to right). Images whose read-out does not have as many digits as the truth are skipped.
 *
 * @param read Digits read per image, left to right.
 * @param truth True digits per image, left to right (same order as `read`).
 * @returns The 10 x 10 matrix and how many images were skipped.
 */
export function digitConfusion(
  read: readonly (readonly number[])[],
  truth: readonly (readonly number[])[],
): { matrix: number[][]; skipped: number } {
  if (read.length !== truth.length) {
    throw new RangeError(`digitConfusion(): ${read.length} read-outs for ${truth.length} truths`);
  }
  const matrix = Array.from({ length: 10 }, () => new Array<number>(10).fill(0));
  let skipped = 0;
  read.forEach((digits, i) => {
    if (digits.length !== truth[i].length) {
      skipped += 1;
      return;
    }
    digits.forEach((d, j) => matrix[truth[i][j]][d] += 1);
  });
  return { matrix, skipped };
}

/**
 * The most frequent off-diagonal cells of a confusion matrix, e.g. digit pairs read wrongly.
 *
 * @returns Up to `top` entries `{ truth, read, count }`, most frequent first.
 */
export function topConfusions(
  matrix: readonly (readonly number[])[],
  top = 8,
): { truth: number; read: number; count: number }[] {
  const cells = matrix.flatMap((row, t) =>
    row.map((count, r) => ({ truth: t, read: r, count })).filter((c) =>
      c.truth !== c.read && c.count > 0
    )
  );
  return cells.sort((a, b) => b.count - a.count || a.truth - b.truth).slice(0, top);
}

/**
 * Gray images (0..255, `[40 * 168]` each, or one flat array of several) as the model's input
 * tensor `[n, 40, 168, 1]` in [0, 1]. The caller disposes it.
 */
export function imagesToTensor(images: Uint8Array | readonly Uint8Array[]): tf.Tensor4D {
  const flat = images instanceof Uint8Array ? images : (() => {
    const out = new Uint8Array(images.length * IMAGE_SIZE);
    images.forEach((im, i) => out.set(im, i * IMAGE_SIZE));
    return out;
  })();
  if (flat.length % IMAGE_SIZE !== 0) {
    throw new Error(
      `imagesToTensor(): ${flat.length} bytes is not a whole number of ${IMAGE_HEIGHT} x ${IMAGE_WIDTH} images`,
    );
  }
  const values = Float32Array.from(flat, (v) => v / 255);
  return tf.tensor4d(values, [flat.length / IMAGE_SIZE, IMAGE_HEIGHT, IMAGE_WIDTH, 1]);
}

/**
 * The first `count` images of a loader as gray bytes (`[40 * 168]` each, 0..255) with their
 * labels, in loader order.
 */
export async function loaderSample(
  loader: BatchSource,
  count: number,
): Promise<{ images: Uint8Array[]; labels: number[] }> {
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (const { x, y } of loader.batches()) {
    const pixels = await x.data(); // [b, 40, 168, 1]
    const sums = await y.data();
    const size = pixels.length / x.shape[0];
    for (let i = 0; i < x.shape[0] && images.length < count; i++) {
      images.push(
        Uint8Array.from(pixels.subarray(i * size, (i + 1) * size), (v) => Math.round(v * 255)),
      );
      labels.push(Math.round(sums[i]));
    }
    x.dispose();
    y.dispose();
    if (images.length >= count) break;
  }
  return { images, labels };
}

/** One image of a {@link readoutFigure}: the pixels, the truth, and what a model read. */
export interface ReadoutItem {
  /** `[40 * 168]` gray bytes. */
  pixels: Uint8Array;
  /** True sum. */
  label: number;
  /** Predicted sum. */
  sum: number;
  /** Digits read, with the column of their centre and the model's probability. */
  digits: readonly { digit: number; centre: number; probability: number }[];
}

/**
 * A figure of per-digit read-outs: each image with every digit a model read written under the
 * place it found it (with its probability), and the predicted against the true sum, green when
 * right and red when wrong.
 *
 * @returns A standalone SVG document.
 */
export async function readoutFigure(
  items: readonly ReadoutItem[],
  options: { columns?: number; scale?: number; title?: string } = {},
): Promise<string> {
  if (items.length === 0) throw new RangeError("readoutFigure(): no images given");
  const columns = Math.max(1, Math.min(options.columns ?? 2, items.length));
  const scale = options.scale ?? 3;
  const gap = 16;
  const w = IMAGE_WIDTH * scale;
  const h = IMAGE_HEIGHT * scale;
  const tileH = h + 64;
  const top = options.title ? 36 : 8;
  const rows = Math.ceil(items.length / columns);
  const width = columns * w + (columns + 1) * gap;
  const height = top + rows * (tileH + gap);
  const right = PALETTE[2];
  const wrong = PALETTE[3];
  const text = (x: number, y: number, size: number, fill: string, body: string, extra = "") =>
    `<text x="${x}" y="${y}" font-family="${FONT_FAMILY}" font-size="${size}" fill="${fill}" ` +
    `text-anchor="middle"${extra}>${escapeHtml(body)}</text>`;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" ` +
    `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  if (options.title) {
    parts.push(
      `<text x="${gap}" y="24" font-family="${FONT_FAMILY}" font-size="15" font-weight="bold" ` +
        `fill="#222">${escapeHtml(options.title)}</text>`,
    );
  }
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item.pixels.length !== IMAGE_SIZE) {
      throw new RangeError(
        `readoutFigure(): image ${i} has ${item.pixels.length} pixels, expected ${IMAGE_SIZE}`,
      );
    }
    const x = gap + (i % columns) * (w + gap);
    const y = top + Math.floor(i / columns) * (tileH + gap);
    const uri = dataUri(await encodePng(item.pixels, IMAGE_WIDTH, IMAGE_HEIGHT));
    const ok = item.sum === item.label;
    parts.push(
      `<image x="${x}" y="${y}" width="${w}" height="${h}" preserveAspectRatio="none" ` +
        `style="image-rendering:pixelated" href="${uri}" xlink:href="${uri}"/>`,
    );
    for (const d of item.digits) {
      const cx = x + d.centre * scale;
      parts.push(
        `<path d="M${cx - 5} ${y + h + 7} L${cx + 5} ${y + h + 7} L${cx} ${
          y + h + 1
        } Z" fill="#555"/>`,
        text(cx, y + h + 24, 16, "#111", String(d.digit), ' font-weight="bold"'),
        text(cx, y + h + 37, 10, "#666", d.probability.toFixed(2)),
      );
    }
    parts.push(
      text(
        x + w / 2,
        y + h + 56,
        13,
        ok ? right : wrong,
        `${item.digits.map((d) => d.digit).join(" + ")} = ${item.sum}  (true sum ${item.label})`,
      ),
    );
  }
  parts.push("</svg>");
  return parts.join("\n");
}

/**
 * SumNet's digit read-outs on fresh composites of MNIST *test* digits, whose four digits are
 * known: the material of a digit confusion matrix ({@link digitConfusion}).
 *
 * @param model A SumNet.
 * @param options `count` composites (default 1,000), generator `seed` (default 2024), `batchSize`.
 * @returns The digits read and the true digits per composite, left to right.
 */
export async function probeDigits(
  model: tf.LayersModel,
  options: { count?: number; seed?: number; batchSize?: number } = {},
): Promise<{ read: number[][]; truth: number[][]; explanations: Explanation[] }> {
  const count = options.count ?? 1000;
  const batchSize = options.batchSize ?? BATCH_SIZE;
  const probe = generateComposites(await loadMnist("test"), { count, seed: options.seed ?? 2024 });
  const read: number[][] = [];
  const truth: number[][] = [];
  const explanations: Explanation[] = [];
  for (let start = 0; start < count; start += batchSize) {
    const end = Math.min(count, start + batchSize);
    const x = imagesToTensor(probe.images.subarray(start * IMAGE_SIZE, end * IMAGE_SIZE));
    try {
      (await explainBatch(model, x)).forEach((e, i) => {
        explanations.push(e);
        read.push(e.digits.map((d) => d.digit));
        const n = probe.digits.length / count;
        truth.push([...probe.digits.subarray((start + i) * n, (start + i + 1) * n)]);
      });
    } finally {
      x.dispose();
    }
  }
  return { read, truth, explanations };
}

/**
 * Pick images for a {@link readoutFigure}: up to `wrong` wrongly predicted ones and right ones
 * to fill `count`, in sample order.
 */
export function pickReadouts(
  sample: { images: Uint8Array[]; labels: number[] },
  explanations: readonly Explanation[],
  options: { count?: number; wrong?: number } = {},
): ReadoutItem[] {
  const count = options.count ?? 6;
  const indices = explanations.map((_, i) => i);
  const isRight = (i: number) => explanations[i].sum === sample.labels[i];
  const wrong = indices.filter((i) => !isRight(i)).slice(0, options.wrong ?? 4);
  const right = indices.filter(isRight).slice(0, count - wrong.length);
  return [...right, ...wrong].map((i) => ({
    pixels: sample.images[i],
    label: sample.labels[i],
    sum: explanations[i].sum,
    digits: explanations[i].digits,
  }));
}

/**
 * Where a model's sums go wrong: accuracy by true sum (bar chart), how far off the answers are
 * (table), and true against predicted sum (heatmap).
 *
 * @param result Predictions and labels, e.g. from `evaluateAccuracy`.
 * @param name Model name for the titles.
 */
export async function showSumErrors(
  result: { predictions: ArrayLike<number>; labels: ArrayLike<number> },
  name: string,
): Promise<void> {
  const { predictions, labels } = result;
  const bySum = perClassAccuracy(predictions, labels, NUM_SUMS);
  const sums = bySum.counts.map((_, s) => s).filter((s) => bySum.counts[s] > 0);
  await showBarChart(sums.map(String), [{
    name: "accuracy",
    values: sums.map((s) => bySum.accuracy[s]),
  }], {
    title: `${name}: accuracy by true sum`,
    subtitle: "sums with no images are left out",
    xLabel: "true sum",
    yLabel: "accuracy",
    yUnit: "%",
    labels: false,
    height: 320,
    alt: "accuracy by true sum",
  });
  const distances = errorDistances(predictions, labels);
  await showTable(
    ["off by", "images", "share"],
    distances.map(([d, n]) => [String(d), String(n), (100 * n) / labels.length]),
    { unit: "%", decimals: 1 },
  );
  await showHeatmap(confusionMatrix(predictions, labels, NUM_SUMS), {
    title: `${name}: true sum (rows) against predicted sum (columns)`,
    xLabel: "predicted sum",
    yLabel: "true sum",
    diagonal: true,
    alt: "sum confusion matrix",
  });
}

/**
 * Which digits a model misreads: the share of digits read right, the 10 x 10 confusion heatmap,
 * and the most frequent confusions (see {@link probeDigits}).
 */
export async function showDigitErrors(
  probe: { read: number[][]; truth: number[][] },
  name: string,
): Promise<void> {
  const { matrix, skipped } = digitConfusion(probe.read, probe.truth);
  const right = matrix.reduce((n, row, d) => n + row[d], 0);
  const total = matrix.flat().reduce((a, b) => a + b, 0);
  console.log(
    `${probe.read.length} composites: ${((100 * right) / Math.max(1, total)).toFixed(2)}% of ` +
      `${total} digits read right` + (skipped ? ` (${skipped} read-outs skipped)` : "") + ".",
  );
  await showHeatmap(matrix, {
    title: `${name}: true digit (rows) against digit read (columns)`,
    xLabel: "digit read",
    yLabel: "true digit",
    width: 520,
    height: 480,
    alt: "digit confusion matrix",
  });
  const top = topConfusions(matrix, 8);
  if (top.length) {
    await showTable(
      ["true digit", "read as", "times"],
      top.map((c) => [String(c.truth), String(c.read), String(c.count)]),
    );
  }
}
