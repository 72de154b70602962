/**
 * Where a model goes wrong: accuracy by true sum, distances of wrong sums, SumNet's digit
 * read-outs against known digits, and figures of read-outs.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { BATCH_SIZE, IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_SUMS } from "../constants.ts";
import { confusionMatrix, FONT_FAMILY, PALETTE } from "../results/charts.ts";
import { encodePng } from "../io/png.ts";
import { explainBatch, type Explanation } from "../models/sumnet/mod.ts";
import { generateComposites, loadMnist } from "../data/generate.ts";
import { type BatchSource } from "../data/batch.ts";
import { dataUri, escapeHtml } from "../io/text.ts";
import { showTable } from "./display.ts";
import type { ConditionsReport } from "../results/readout.ts";
import { showBarChart, showHeatmap } from "./figures.ts";

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

/** One model's column in {@link showConditionsComparison}. */
export interface ConditionsColumn {
  /** Column heading and legend entry. */
  label: string;
  /** The model's report (`readConditionsReport`). */
  report: ConditionsReport;
}

/**
 * Several models on the same test conditions: a grouped bar chart of exact-sum accuracy per
 * condition, then a table with each model's accuracy and, for each model after the first, its
 * change in points against the first.
 *
 * @throws Error when the reports do not hold the same conditions in the same order
 */
export async function showConditionsComparison(
  columns: readonly ConditionsColumn[],
): Promise<void> {
  if (columns.length === 0) throw new Error("showConditionsComparison: no reports given");
  const names = columns[0].report.conditions.map((c) => c.name);
  for (const { label, report } of columns) {
    const theirs = report.conditions.map((c) => c.name);
    if (theirs.join() !== names.join()) {
      throw new Error(
        `showConditionsComparison: ${label} has conditions ${theirs.join(", ")}, ` +
          `${columns[0].label} has ${names.join(", ")}`,
      );
    }
  }
  const count = columns[0].report.count;
  await showBarChart(
    names,
    columns.map(({ label, report }) => ({
      name: label,
      values: report.conditions.map((c) => c.accuracy),
    })),
    {
      title: "Exact sums per test condition",
      subtitle: `${count} composites of MNIST test digits each; reporting only, never trained on`,
      xLabel: "condition",
      yLabel: "sums right",
      yUnit: "%",
      labels: false,
      yMin: 50,
      yMax: 100,
      height: 420,
      alt: "accuracy per test condition",
    },
  );
  const first = columns[0].report.conditions;
  await showTable(
    [
      "condition",
      "readable",
      ...columns.map((c) => c.label),
      ...columns.slice(1).map((c) => `${c.label} - ${columns[0].label} (points)`),
    ],
    names.map((name, i) => [
      name,
      first[i].readable ? "yes" : "no",
      ...columns.map((c) => `${c.report.conditions[i].accuracy.toFixed(2)}%`),
      ...columns.slice(1).map((c) => {
        const change = c.report.conditions[i].accuracy - first[i].accuracy;
        return `${change >= 0 ? "+" : ""}${change.toFixed(2)}`;
      }),
    ]),
  );
}
