/**
 * THE chart functions of digitsum: headless SVG charts (ECharts server-side rendering, no DOM, no
 * network) and SVG -> PNG rasterisation (resvg, with an explicit font file). The sweep report,
 * the notebooks and the README figures all draw through this module, so every figure looks alike.
 *
 * Every chart function returns a self-contained SVG string (`xmlns` set, white background), which
 * can be written to a `.svg` file, inlined in HTML, shown in a notebook
 * (`Deno.jupyter.display({ "image/svg+xml": svg }, { raw: true })`) or turned into PNG bytes
 * with {@link svgToPng}.
 *
 * ```ts
 * import { lineChart, svgToPng } from "../lib/results/charts.ts";
 * const svg = lineChart([{ name: "seed 42", y: [30.1, 22.4, 18.0] }], {
 *   title: "Training loss", xLabel: "epoch", yLabel: "MSE",
 * });
 * await Deno.writeFile("loss.png", await svgToPng(svg));
 * ```
 *
 * @module
 */
import * as echarts from "echarts";
import { initWasm, Resvg } from "@resvg/resvg-wasm";
import { encodePng } from "../io/png.ts";
import { dataUri, escapeHtml } from "../io/text.ts";

/** Default chart width in pixels. */
export const DEFAULT_WIDTH = 720;
/** Default chart height in pixels. */
export const DEFAULT_HEIGHT = 400;
/** Series colours (Okabe-Ito, colour-blind safe), used in order. */
export const PALETTE: readonly string[] = [
  "#0072B2",
  "#E69F00",
  "#009E73",
  "#D55E00",
  "#CC79A7",
  "#56B4E9",
  "#F0E442",
  "#000000",
];
/** Font family written into the SVGs (the PNG renderer maps it to the font file it is given). */
export const FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif";
/** Environment variable naming a TrueType/OpenType font file for PNG rendering. */
export const FONT_ENV = "DIGITSUM_FONT";
/** Font files tried, in order, when none is given (Debian/Ubuntu, Fedora, Arch, macOS, Windows). */
export const FONT_CANDIDATES: readonly string[] = [
  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
  "/usr/share/fonts/dejavu/DejaVuSans.ttf",
  "/usr/share/fonts/TTF/DejaVuSans.ttf",
  "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
  "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
  "/Library/Fonts/Arial.ttf",
  "/System/Library/Fonts/Supplemental/Arial.ttf",
  "C:\\Windows\\Fonts\\arial.ttf",
];
/** How to get a font on Debian/Ubuntu, for the error message. */
const FONT_HINT = `install one (Debian/Ubuntu: 'apt-get install fonts-dejavu-core') or set ` +
  `${FONT_ENV}=/path/to/font.ttf`;

/** Size of a chart in pixels. */
export interface ChartSize {
  /** Width in pixels (default {@link DEFAULT_WIDTH}). */
  width?: number;
  /** Height in pixels (default {@link DEFAULT_HEIGHT}). */
  height?: number;
}

/** Options shared by the chart functions. */
export interface ChartOptions extends ChartSize {
  /** Title drawn at the top left. */
  title?: string;
  /** Smaller line under the title. */
  subtitle?: string;
  /** Name of the horizontal axis. */
  xLabel?: string;
  /** Name of the vertical axis. */
  yLabel?: string;
}

/** One line of a {@link lineChart}. */
export interface LineSeries {
  /** Legend entry. */
  name: string;
  /** Values; `null` or a non-finite number leaves a gap. */
  y: ReadonlyArray<number | null>;
  /** Positions on the x axis (default 1, 2, 3, ... as epochs are numbered). */
  x?: readonly number[];
  /** Draw the line dashed. */
  dashed?: boolean;
  /** Line colour (default: the next {@link PALETTE} colour). */
  color?: string;
}

/** Options of {@link lineChart}. */
export interface LineChartOptions extends ChartOptions {
  /** Lower end of the y axis (default: chosen from the data). */
  yMin?: number;
  /** Upper end of the y axis (default: chosen from the data). */
  yMax?: number;
  /** Logarithmic y axis (all values must be positive). */
  logY?: boolean;
  /** Draw a marker at every point (default: when a line has at most 30 points). */
  markers?: boolean;
  /** Suffix for y axis tick labels, e.g. `%`. */
  yUnit?: string;
}

/** One group member of a {@link barChart}: one value per category. */
export interface BarSeries {
  /** Legend entry. */
  name: string;
  /** One value per category; `null` draws no bar. */
  values: ReadonlyArray<number | null>;
  /** Optional symmetric error (e.g. a standard deviation) per category, drawn as a whisker. */
  errors?: ReadonlyArray<number | null>;
  /** Bar colour (default: the next {@link PALETTE} colour). */
  color?: string;
}

/** Options of {@link barChart}. */
export interface BarChartOptions extends ChartOptions {
  /** Write each value above its bar (default true when there are at most 24 bars). */
  labels?: boolean;
  /** Decimals of the value labels (default 2). */
  decimals?: number;
  /** Suffix for the value labels and y ticks, e.g. `%`. */
  yUnit?: string;
  /** Upper end of the y axis (default: chosen from the data). */
  yMax?: number;
  /** Lower end of the y axis (default 0 when no value is negative); whiskers stop there. */
  yMin?: number;
}

/** Options of {@link heatmap}. */
export interface HeatmapOptions extends ChartOptions {
  /** Labels of the columns (x axis, left to right); default 0, 1, 2, ... */
  xLabels?: readonly string[];
  /** Labels of the rows (y axis, bottom to top); default 0, 1, 2, ... */
  yLabels?: readonly string[];
  /** Write each non-zero count in its cell (default: when the matrix has at most 15 columns). */
  showValues?: boolean;
  /** Colour ramp from low to high (default white to dark blue). */
  colors?: readonly string[];
  /** Value mapped to the last colour (default: the largest cell). */
  max?: number;
  /** Draw the diagonal (x = y) as a thin line, e.g. "prediction correct" (default false). */
  diagonal?: boolean;
}

/** One tile of an {@link imageGrid}. */
export interface GridImage {
  /** `height * width` gray bytes, row-major (0 = black). */
  pixels: Uint8Array;
  width: number;
  height: number;
  /** Text under the image. */
  caption?: string;
  /** Caption colour (e.g. green for a right prediction, red for a wrong one). */
  captionColor?: string;
}

/** Options of {@link imageGrid}. */
export interface ImageGridOptions {
  /** Tiles per row (default 4). */
  columns?: number;
  /** Pixel magnification (default 2). */
  scale?: number;
  /** Title over the grid. */
  title?: string;
}

/** Options of {@link svgToPng}. */
export interface PngOptions {
  /** Font file for the text (default: env `DIGITSUM_FONT`, then {@link FONT_CANDIDATES}). */
  fontPath?: string;
  /** Scale factor: 2 gives a 2x (high-DPI) image (default 1). */
  scale?: number;
  /** Background colour (default white). */
  background?: string;
}

/** Thrown by {@link svgToPng} when no font file is available; the message says how to get one. */
export class FontNotFoundError extends Error {
  override name = "FontNotFoundError";
}

/**
 * Render any ECharts option to an SVG string, headlessly. The escape hatch for charts this module
 * has no function for; animation is switched off and the module's font and palette apply unless
 * the option sets its own.
 *
 * @param option An ECharts option object (see https://echarts.apache.org/en/option.html).
 * @param size Width and height in pixels.
 * @returns A standalone SVG document as a string.
 */
export function renderChart(option: Record<string, unknown>, size: ChartSize = {}): string {
  const width = size.width ?? DEFAULT_WIDTH;
  const height = size.height ?? DEFAULT_HEIGHT;
  if (!(width > 0 && height > 0)) {
    throw new RangeError(`renderChart: invalid size ${width}x${height}`);
  }
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  try {
    chart.setOption({
      animation: false,
      backgroundColor: "#ffffff",
      color: [...PALETTE],
      textStyle: { fontFamily: FONT_FAMILY },
      ...option,
    });
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

/** Title component for the shared options. */
function titleOption(options: ChartOptions): Record<string, unknown> {
  return {
    text: options.title ?? "",
    subtext: options.subtitle ?? "",
    left: 12,
    top: 8,
    textStyle: { fontSize: 15, fontWeight: "bold", fontFamily: FONT_FAMILY },
    subtextStyle: { fontSize: 12, color: "#555", fontFamily: FONT_FAMILY },
  };
}

/** Grid margins leaving room for title, legend and axis names. */
function gridOption(options: ChartOptions, legend: boolean): Record<string, unknown> {
  const top = (options.title ? 40 : 16) + (options.subtitle ? 18 : 0) + (legend ? 28 : 0);
  return {
    left: options.yLabel ? 72 : 56,
    right: 24,
    top,
    bottom: options.xLabel ? 56 : 36,
    containLabel: false,
  };
}

/** Legend at the top right, one entry per series. */
function legendOption(names: string[], options: ChartOptions): Record<string, unknown> {
  return {
    data: names,
    top: (options.title ? 36 : 8) + (options.subtitle ? 18 : 0),
    right: 16,
    itemWidth: 18,
    itemHeight: 10,
    itemGap: 18,
    textStyle: { fontSize: 12, fontFamily: FONT_FAMILY },
  };
}

/** Approximate width (px) of one character of a 12 px axis label. */
const LABEL_CHAR_PX = 6.5;

/** Axis name styling shared by x and y axes. */
const AXIS_NAME_STYLE = { fontSize: 12, color: "#333", fontFamily: FONT_FAMILY };

function finiteOrNull(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : value;
}

/**
 * A line chart, e.g. training loss or validation accuracy per epoch with one line per seed.
 *
 * @param series The lines; x defaults to 1, 2, 3, ...
 * @param options Title, axis names, size and y range.
 * @returns A standalone SVG document as a string.
 */
export function lineChart(series: readonly LineSeries[], options: LineChartOptions = {}): string {
  if (series.length === 0) throw new RangeError("lineChart: no series given");
  const longest = Math.max(...series.map((s) => s.y.length));
  const markers = options.markers ?? longest <= 30;
  const xs = series.flatMap((s) => s.x ? [...s.x] : s.y.map((_, i) => i + 1));
  const integerX = xs.every((x) => Number.isInteger(x));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  return renderChart({
    title: titleOption(options),
    legend: legendOption(series.map((s) => s.name), options),
    grid: gridOption(options, true),
    xAxis: {
      type: "value",
      name: options.xLabel ?? "",
      nameLocation: "middle",
      nameGap: 28,
      nameTextStyle: AXIS_NAME_STYLE,
      // One x value (e.g. a 1-epoch run): centre it instead of pinning it to the right edge.
      min: xs.length ? Math.min(...xs) - (xMin === xMax ? 1 : 0) : undefined,
      max: xs.length ? Math.max(...xs) + (xMin === xMax ? 1 : 0) : undefined,
      minInterval: integerX ? 1 : undefined,
      splitLine: { show: false },
    },
    yAxis: {
      type: options.logY ? "log" : "value",
      name: options.yLabel ?? "",
      nameLocation: "middle",
      nameGap: options.yUnit ? 52 : 46,
      nameTextStyle: AXIS_NAME_STYLE,
      min: options.yMin,
      max: options.yMax,
      scale: options.yMin === undefined,
      axisLabel: { formatter: `{value}${options.yUnit ?? ""}` },
      splitLine: { lineStyle: { color: "#e6e6e6" } },
    },
    series: series.map((s, i) => ({
      type: "line",
      name: s.name,
      data: s.y.map((y, j) => [s.x ? s.x[j] : j + 1, finiteOrNull(y)]),
      showSymbol: markers,
      symbolSize: 5,
      connectNulls: false,
      color: s.color ?? PALETTE[i % PALETTE.length],
      lineStyle: { width: 2, type: s.dashed ? "dashed" : "solid" },
    })),
  }, options);
}

/**
 * A grouped bar chart: one group per category, one bar per series, optional error whiskers.
 *
 * @param categories Group names along the x axis (e.g. model titles).
 * @param series The bars of each group (e.g. train / val / test accuracy).
 * @param options Title, axis names, value labels and size.
 * @returns A standalone SVG document as a string.
 */
// Long because: one declarative ECharts option (axes, series, error whiskers, labels) read top to bottom; split, it would be harder to follow.
export function barChart(
  categories: readonly string[],
  series: readonly BarSeries[],
  options: BarChartOptions = {},
): string {
  if (categories.length === 0 || series.length === 0) {
    throw new RangeError("barChart: needs at least one category and one series");
  }
  for (const s of series) {
    if (s.values.length !== categories.length) {
      throw new RangeError(
        `barChart: series '${s.name}' has ${s.values.length} values for ${categories.length} categories`,
      );
    }
  }
  const decimals = options.decimals ?? 2;
  const unit = options.yUnit ?? "";
  const values = series.flatMap((s) => s.values.map(finiteOrNull)).filter((v) => v !== null);
  const yMin = options.yMin ?? (values.every((v) => v >= 0) ? 0 : undefined);
  const labels = options.labels ?? categories.length * series.length <= 24;
  const n = series.length;
  const categoryGap = 0.3; // fraction of a category band left empty
  const barGap = 0.1; // gap between bars, as a fraction of a bar's width
  const bars = series.map((s, i) => ({
    type: "bar",
    name: s.name,
    data: s.values.map(finiteOrNull),
    color: s.color ?? PALETTE[i % PALETTE.length],
    barCategoryGap: `${categoryGap * 100}%`,
    barGap: `${barGap * 100}%`,
    label: {
      show: labels && !s.errors, // with whiskers, the custom series writes the label above them
      position: "top",
      distance: 4,
      fontSize: 10,
      fontFamily: FONT_FAMILY,
      formatter: (p: { value: number | null }) =>
        p.value === null ? "" : `${p.value.toFixed(decimals)}${unit}`,
    },
  }));
  // Whiskers: a custom series drawing |-| at each bar centre; bar centres follow the gaps above.
  const whiskers = series.flatMap((s, i) => {
    if (!s.errors) return [];
    const data = categories.map((_, c) => {
      const v = finiteOrNull(s.values[c]);
      const e = finiteOrNull(s.errors![c] ?? null);
      return v === null || e === null
        ? [c, null, null, null]
        : [c, yMin === undefined ? v - e : Math.max(yMin, v - e), v + e, v];
    });
    return [{
      type: "custom",
      name: `${s.name} (error)`,
      data,
      z: 10,
      silent: true,
      renderItem: (
        _params: unknown,
        api: {
          value(dim: number): number | null;
          coord(point: number[]): number[];
          size(value: number[]): number[];
        },
      ) => {
        const lowValue = api.value(1);
        const highValue = api.value(2);
        if (lowValue === null || highValue === null || Number.isNaN(lowValue)) return null;
        const band = api.size([1, 0])[0];
        const used = band * (1 - categoryGap);
        const width = used / (n + (n - 1) * barGap);
        const category = api.value(0)!;
        const centre = api.coord([category, 0])[0] - used / 2 + i * width * (1 + barGap) +
          width / 2;
        const low = api.coord([category, lowValue])[1];
        const high = api.coord([category, highValue])[1];
        const cap = Math.min(8, width * 0.3);
        const style = { stroke: "#222", lineWidth: 1.2 };
        const value = api.value(3)!;
        const text = labels
          ? [{
            type: "text",
            x: centre,
            y: high - 4,
            style: {
              text: `${value.toFixed(decimals)}${unit}`,
              textAlign: "center",
              textVerticalAlign: "bottom",
              fontSize: 10,
              fontFamily: FONT_FAMILY,
              fill: "#333",
            },
          }]
          : [];
        return {
          type: "group",
          children: [
            ...text,
            { type: "line", shape: { x1: centre, y1: low, x2: centre, y2: high }, style },
            {
              type: "line",
              shape: { x1: centre - cap, y1: low, x2: centre + cap, y2: low },
              style,
            },
            {
              type: "line",
              shape: { x1: centre - cap, y1: high, x2: centre + cap, y2: high },
              style,
            },
          ],
        };
      },
    }];
  });
  // Invisible points at the whisker tops (plus room for a label) so the axis range covers them.
  const tops = series.flatMap((s) =>
    s.values.map((v, c) => {
      const value = finiteOrNull(v);
      const error = finiteOrNull(s.errors?.[c] ?? null) ?? 0;
      return value === null ? null : [c, (value + Math.abs(error)) * (labels ? 1.08 : 1)];
    })
  ).filter((p) => p !== null);
  const headroom = whiskers.length
    ? [{ type: "scatter", data: tops, symbolSize: 0, silent: true, tooltip: { show: false } }]
    : [];
  // Category names too long for their band are written at a slant, every one of them (ECharts
  // would otherwise drop every other name).
  const grid = gridOption(options, true);
  const band = ((options.width ?? DEFAULT_WIDTH) - 100) / categories.length;
  const longest = Math.max(...categories.map((c) => c.length)) * LABEL_CHAR_PX;
  const slant = longest > band * 0.9;
  const drop = slant ? Math.ceil(longest * Math.sin(Math.PI / 6)) : 0; // extra height at 30 degrees
  grid.bottom = (grid.bottom as number) + drop;
  return renderChart({
    title: titleOption(options),
    legend: legendOption(series.map((s) => s.name), options),
    grid,
    xAxis: {
      type: "category",
      data: [...categories],
      name: options.xLabel ?? "",
      nameLocation: "middle",
      nameGap: 28 + drop,
      nameTextStyle: AXIS_NAME_STYLE,
      axisTick: { alignWithLabel: true },
      axisLabel: slant ? { interval: 0, rotate: 30 } : {},
    },
    yAxis: {
      type: "value",
      name: options.yLabel ?? "",
      nameLocation: "middle",
      nameGap: unit ? 52 : 46,
      nameTextStyle: AXIS_NAME_STYLE,
      min: yMin,
      max: options.yMax,
      axisLabel: { formatter: `{value}${unit}` },
      splitLine: { lineStyle: { color: "#e6e6e6" } },
    },
    series: [...bars, ...whiskers, ...headroom],
  }, options);
}

/**
 * A heatmap of a matrix, e.g. a confusion matrix (rows = true sum, columns = predicted sum).
 * Row 0 is drawn at the bottom, as on a y axis; cells with 0 stay white.
 *
 * @param matrix `matrix[row][column]`; all rows the same length.
 * @param options Labels, colours, title, size.
 * @returns A standalone SVG document as a string.
 */
// Long because: one declarative ECharts option (grid, visual map, cells, diagonal) read top to bottom.
export function heatmap(
  matrix: readonly (readonly number[])[],
  options: HeatmapOptions = {},
): string {
  const rows = matrix.length;
  const columns = rows ? matrix[0].length : 0;
  if (rows === 0 || columns === 0) throw new RangeError("heatmap: empty matrix");
  matrix.forEach((row, r) => {
    if (row.length !== columns) {
      throw new RangeError(`heatmap: row ${r} has ${row.length} cells, row 0 has ${columns}`);
    }
  });
  const xLabels = options.xLabels ?? Array.from({ length: columns }, (_, i) => String(i));
  const yLabels = options.yLabels ?? Array.from({ length: rows }, (_, i) => String(i));
  if (xLabels.length !== columns || yLabels.length !== rows) {
    throw new RangeError(
      `heatmap: ${xLabels.length} x labels and ${yLabels.length} y labels for a ${rows}x${columns} matrix`,
    );
  }
  let max = 0;
  const data: Array<[number, number, number | null]> = [];
  matrix.forEach((row, r) =>
    row.forEach((v, c) => {
      if (Number.isFinite(v) && v > max) max = v;
      data.push([c, r, Number.isFinite(v) && v !== 0 ? v : null]);
    })
  );
  const showValues = options.showValues ?? columns <= 15;
  const width = options.width ?? 640;
  const height = options.height ?? 600;
  const colors = options.colors ?? ["#f0f5fb", "#9ecae1", "#3182bd", "#08306b"];
  const interval = (n: number) => Math.max(0, Math.ceil(n / 19) - 1);
  const extra: Record<string, unknown>[] = [];
  if (options.diagonal) {
    extra.push({
      type: "line",
      data: [[xLabels[0], yLabels[0]], [
        xLabels[Math.min(rows, columns) - 1],
        yLabels[Math.min(rows, columns) - 1],
      ]],
      symbol: "none",
      silent: true,
      lineStyle: { color: "#D55E00", width: 1, type: "dashed", opacity: 0.7 },
      z: 5,
    });
  }
  return renderChart({
    title: titleOption(options),
    grid: {
      left: options.yLabel ? 64 : 44,
      right: 88,
      top: (options.title ? 44 : 16) + (options.subtitle ? 18 : 0),
      bottom: options.xLabel ? 52 : 32,
    },
    xAxis: {
      type: "category",
      data: [...xLabels],
      name: options.xLabel ?? "",
      nameLocation: "middle",
      nameGap: 28,
      nameTextStyle: AXIS_NAME_STYLE,
      splitArea: { show: false },
      axisLabel: { interval: interval(columns), fontSize: 10 },
      axisTick: { alignWithLabel: true, interval: interval(columns) },
    },
    yAxis: {
      type: "category",
      data: [...yLabels],
      name: options.yLabel ?? "",
      nameLocation: "middle",
      nameGap: 36,
      nameTextStyle: AXIS_NAME_STYLE,
      axisLabel: { interval: interval(rows), fontSize: 10 },
      axisTick: { alignWithLabel: true, interval: interval(rows) },
    },
    visualMap: {
      type: "continuous",
      min: 0,
      max: options.max ?? Math.max(1, max),
      calculable: false,
      orient: "vertical",
      right: 12,
      top: "middle",
      itemHeight: Math.max(80, height * 0.5),
      itemWidth: 14,
      precision: 0,
      text: [String(options.max ?? Math.max(1, max)), "0"],
      inRange: { color: [...colors] },
      textStyle: { fontSize: 11, fontFamily: FONT_FAMILY },
      seriesIndex: 0,
    },
    series: [{
      type: "heatmap",
      data,
      label: { show: showValues, fontSize: 10, fontFamily: FONT_FAMILY },
      itemStyle: { borderColor: "#ffffff", borderWidth: columns > 20 ? 0.5 : 1 },
    }, ...extra],
  }, { width, height });
}

/**
 * Count a confusion matrix: `matrix[trueValue][predictedValue]`. Predictions outside
 * `0..classes-1` (a regressor can predict -1 or 40) are clamped into the first or last column, so
 * every image is counted once.
 *
 * @param predictions Predicted class per image.
 * @param labels True class per image (same length), each in `0..classes-1`.
 * @param classes Number of classes (37 for sums 0..36).
 */
export function confusionMatrix(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
): number[][] {
  if (predictions.length !== labels.length) {
    throw new RangeError(
      `confusionMatrix: ${predictions.length} predictions for ${labels.length} labels`,
    );
  }
  const matrix = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i];
    if (!Number.isInteger(t) || t < 0 || t >= classes) {
      throw new RangeError(
        `confusionMatrix: label ${t} at index ${i} is outside 0..${classes - 1}`,
      );
    }
    const p = Math.min(classes - 1, Math.max(0, Math.round(predictions[i])));
    matrix[t][p] += 1;
  }
  return matrix;
}

/**
 * A grid of grayscale images with captions (e.g. validation images with true and predicted sums),
 * as SVG with the images embedded as PNG `data:` URIs.
 *
 * @param images The tiles, drawn left to right, top to bottom.
 * @param options Columns, magnification and title.
 * @returns A standalone SVG document as a string.
 */
export async function imageGrid(
  images: readonly GridImage[],
  options: ImageGridOptions = {},
): Promise<string> {
  if (images.length === 0) throw new RangeError("imageGrid: no images given");
  const columns = Math.max(1, Math.min(options.columns ?? 4, images.length));
  const scale = options.scale ?? 2;
  const tileW = Math.max(...images.map((im) => im.width)) * scale;
  const tileH = Math.max(...images.map((im) => im.height)) * scale;
  const gap = 12;
  const captionH = 20;
  const top = options.title ? 36 : 8;
  const rows = Math.ceil(images.length / columns);
  const width = columns * tileW + (columns + 1) * gap;
  const height = top + rows * (tileH + captionH + gap) + gap / 2;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" ` +
    `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  if (options.title) {
    parts.push(
      `<text x="${gap}" y="24" font-family="${FONT_FAMILY}" font-size="15" ` +
        `font-weight="bold" fill="#222">${escapeHtml(options.title)}</text>`,
    );
  }
  for (let i = 0; i < images.length; i++) {
    const im = images[i];
    const png = await encodePng(im.pixels, im.width, im.height);
    const x = gap + (i % columns) * (tileW + gap);
    const y = top + Math.floor(i / columns) * (tileH + captionH + gap);
    const w = im.width * scale;
    const h = im.height * scale;
    parts.push(
      `<image x="${x}" y="${y}" width="${w}" height="${h}" image-rendering="pixelated" ` +
        `style="image-rendering:pixelated" preserveAspectRatio="none" ` +
        `href="${dataUri(png)}" xlink:href="${dataUri(png)}"/>`,
    );
    if (im.caption) {
      parts.push(
        `<text x="${x + w / 2}" y="${y + h + 15}" text-anchor="middle" ` +
          `font-family="${FONT_FAMILY}" font-size="12" fill="${im.captionColor ?? "#222"}">` +
          `${escapeHtml(im.caption)}</text>`,
      );
    }
  }
  parts.push("</svg>");
  return parts.join("\n");
}

/**
 * The font file {@link svgToPng} uses: env `DIGITSUM_FONT` if set, else the first of
 * {@link FONT_CANDIDATES} that exists.
 *
 * @returns The path, or `undefined` when none is found.
 */
export function findFont(): string | undefined {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get(FONT_ENV);
  } catch {
    // No env permission: use the candidates.
  }
  if (fromEnv) return fromEnv;
  for (const path of FONT_CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there: try the next one.
    }
  }
  return undefined;
}

let wasmReady: Promise<void> | undefined;
const fontCache = new Map<string, Uint8Array>();

/** Load resvg's WebAssembly once per process. */
function ensureResvg(): Promise<void> {
  wasmReady ??= (async () => {
    const url = new URL(import.meta.resolve("@resvg/resvg-wasm/index_bg.wasm"));
    let bytes: Uint8Array;
    try {
      bytes = url.protocol === "file:"
        ? await Deno.readFile(url)
        : new Uint8Array(await (await fetch(url)).arrayBuffer());
    } catch (error) {
      throw new Error(`Cannot read ${url.href}: ${(error as Error).message}`);
    }
    await initWasm(bytes);
  })();
  wasmReady.catch(() => wasmReady = undefined);
  return wasmReady;
}

async function readFont(path: string): Promise<Uint8Array> {
  let bytes = fontCache.get(path);
  if (!bytes) {
    try {
      bytes = await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new FontNotFoundError(`Cannot read font ${path}: file not found; ${FONT_HINT}`);
      }
      throw new Error(`Cannot read font ${path}: ${(error as Error).message}`);
    }
    fontCache.set(path, bytes);
  }
  return bytes;
}

/**
 * Rasterise an SVG string to PNG bytes with resvg (WebAssembly), using an explicit font file for
 * all text (no system font lookup, so the output is the same on every machine with that font).
 *
 * @param svg An SVG document, e.g. from {@link lineChart}.
 * @param options Font file, scale and background.
 * @returns The PNG file bytes.
 * @throws {FontNotFoundError} when no font file is given or found; the message says how to get one.
 */
export async function svgToPng(svg: string, options: PngOptions = {}): Promise<Uint8Array> {
  const fontPath = options.fontPath ?? findFont();
  if (!fontPath) {
    throw new FontNotFoundError(`Cannot render PNG: no font file found; ${FONT_HINT}`);
  }
  const [font] = await Promise.all([readFont(fontPath), ensureResvg()]);
  const scale = options.scale ?? 1;
  const resvg = new Resvg(svg, {
    font: { fontBuffers: [font], defaultFontFamily: "", defaultFontSize: 12 },
    fitTo: scale === 1 ? { mode: "original" } : { mode: "zoom", value: scale },
    background: options.background ?? "#ffffff",
    shapeRendering: 2,
    textRendering: 1,
  });
  try {
    const image = resvg.render();
    try {
      return image.asPng();
    } finally {
      image.free();
    }
  } finally {
    resvg.free();
  }
}
