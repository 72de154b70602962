/**
 * Charts for notebooks: each the PNG of `results/charts.ts`' SVG together with the same data as
 * a Plotly figure, in one output bundle.
 *
 * @module
 */
import type { Layout, Plot } from "nodeplotlib";
import {
  barChart,
  type BarChartOptions,
  type BarSeries,
  type ChartOptions,
  DEFAULT_HEIGHT,
  FONT_FAMILY,
  heatmap,
  type HeatmapOptions,
  lineChart,
  type LineChartOptions,
  type LineSeries,
  PALETTE,
} from "../results/charts.ts";
import { showSvg } from "./display.ts";
import { type PlotlyFigure } from "./window.ts";

/** Axis and title options shared by the figure builders (the same as `lib/results/charts.ts` takes). */
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
