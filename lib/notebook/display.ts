/**
 * Showing things in a notebook: charts as PNG (with their Plotly figure), PNG images, tables (HTML
 * with a Markdown copy) and a model's layers.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { FontNotFoundError, svgToPng } from "../results/charts.ts";
import { jupyter } from "../runtime/progress.ts";
import { base64, escapeHtml } from "../io/text.ts";
import { display, type MimeBundle } from "./kernel.ts";
import { PLOTLY_MIME, type PlotlyFigure, showInteractive } from "./window.ts";

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
 * Show a chart from `lib/results/charts.ts` in the notebook, as a PNG rendered from the SVG at twice
 * its size and displayed at its size. PNG is the one image type every front end shows: classic
 * Notebook 6 and JupyterLab hide SVG output in untrusted notebooks (any notebook you did not run
 * yourself), and nbconvert 6.5's HTML export empties inline SVGs. With `vector: true` the SVG
 * goes into the bundle too, for front ends that prefer it; with a `figure`, its Plotly figure
 * (one output either way: a front end shows one type of a bundle). Without a font for the PNG
 * (see `findFont` in `lib/results/charts.ts`) the SVG is shown instead, with a note.
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
