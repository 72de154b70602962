/**
 * SumNet's inference core, free of file I/O so that the same code runs in Deno and in a browser
 * (`web/`): the cell geometry, the custom layers a checkpoint needs to load ({@linkcode SumCombine},
 * {@linkcode TestViews}, {@linkcode MeanOverViews}) and the read-out of the digits
 * ({@linkcode explainBatch}). `lib/models/sumnet/` re-exports all of it and adds the builder and the
 * training recipe.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  CELL_WIDTH,
  IMAGE_HEIGHT,
  IMAGE_SIZE,
  IMAGE_WIDTH,
  NOTHING,
  NUM_CELL_CLASSES,
  NUM_CELLS,
  NUM_DIGITS,
} from "../../constants.ts";

/** Name of the layer that outputs the per-cell logits `[b, 1, 21, 11]`. */
export const CELL_LOGITS_LAYER = "cell_logits";
/** Floor mixed into every cell distribution so that no configuration has probability 0. */
const CELL_PROBABILITY_FLOOR = 1e-6;
/** Largest digit value. */
const MAX_DIGIT = 9;
/** Outputs of SumNet: sums 0..36. */
const NUM_SUMS_OUT = MAX_DIGIT * NUM_DIGITS + 1;

/**
 * Distribution of the sum of the digits in `cells`, given that exactly `count` cells hold a digit.
 *
 * Cell `l` independently holds digit `d` with probability `p[b, l, d]` (d = 0..9) or nothing with
 * `p[b, l, 10]`. The state `[b, count + 1, 9 * count + 1]` holds P(k digits so far, partial sum s);
 * each cell moves mass from (k, s) to (k + 1, s + d) or keeps it. Mass past `count` digits is
 * dropped, and the state is rescaled to total mass 1 after each cell (against underflow). The
 * result is P(sum = s | exactly `count` digits).
 *
 * @param cells `[b, L, 11]` probabilities (rows summing to 1)
 * @param count number of digits (4 for the task)
 * @returns `[b, 9 * count + 1]` probabilities
 */
export function combineCellProbabilities(cells: tf.Tensor3D, count: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, cellCount] = cells.shape;
    const sums = MAX_DIGIT * count + 1;
    // shift[s, d * sums + t] = 1 when t = s + d: one matmul makes all ten shifted copies.
    const shiftValues = new Float32Array(sums * 10 * sums);
    for (let s = 0; s < sums; s++) {
      for (let d = 0; d <= MAX_DIGIT && s + d < sums; d++) {
        shiftValues[s * 10 * sums + d * sums + s + d] = 1;
      }
    }
    const shift = tf.tensor2d(shiftValues, [sums, 10 * sums]);
    const zeroRow = tf.zeros([b, 1, sums]);
    let state: tf.Tensor3D = tf.oneHot(tf.zeros([b], "int32"), (count + 1) * sums)
      .toFloat().reshape([b, count + 1, sums]);
    for (let l = 0; l < cellCount; l++) {
      const p = cells.slice([0, l, 0], [b, 1, NUM_CELL_CLASSES]).reshape([b, NUM_CELL_CLASSES]);
      const pDigits = p.slice([0, 0], [b, 10]).reshape([b, 1, 10, 1]);
      const pNothing = p.slice([0, NOTHING], [b, 1]).reshape([b, 1, 1]);
      const below = state.slice([0, 0, 0], [b, count, sums]).reshape([b * count, sums]);
      const moved = tf.matMul(below, shift).reshape([b, count, 10, sums]).mul(pDigits).sum(2);
      state = state.mul(pNothing).add(tf.concat([zeroRow, moved], 1)) as tf.Tensor3D;
      // Rescale to total mass 1 (the result is normalised anyway): no underflow however sure
      // the cells are, e.g. when every cell says "digit" and four digits become very unlikely.
      state = state.div(state.sum([1, 2], true));
    }
    const last = state.slice([0, count, 0], [b, 1, sums]).reshape([b, sums]);
    return last.div(last.sum(1, true)) as tf.Tensor2D;
  });
}

/** Backends whose tensors can be read synchronously (the fused host path needs `dataSync`). */
const SYNC_BACKENDS = new Set(["wasm", "cpu", "tensorflow"]);

/** Forward pass of the host dynamic programme, kept for the backward pass. */
interface HostForward {
  /** `[b, L + 1, count + 1, sums]` rescaled states before each cell (and after the last). */
  alpha: Float64Array;
  /** `[b, L]` rescaling factor of each cell's step. */
  scale: Float64Array;
  /** `[b, sums]` P(sum = s | count digits), unclipped. */
  probs: Float64Array;
}

/**
 * {@linkcode combineCellProbabilities} as one host loop per image (forward, and backward as the
 * matching backward recursion), returning log-probabilities clipped at 1e-30. On wasm this
 * replaces about 250 small kernels per forward pass (and twice that backward) with a few
 * milliseconds of plain arithmetic.
 */
function hostCombineForward(p: Float32Array, b: number, cellCount: number, count: number) {
  const sums = MAX_DIGIT * count + 1;
  const states = (count + 1) * sums;
  const alpha = new Float64Array(b * (cellCount + 1) * states);
  const scale = new Float64Array(b * cellCount);
  const probs = new Float64Array(b * sums);
  for (let i = 0; i < b; i++) {
    const base = i * (cellCount + 1) * states;
    alpha[base] = 1;
    for (let l = 0; l < cellCount; l++) {
      const pc = (i * cellCount + l) * NUM_CELL_CLASSES;
      const from = base + l * states;
      const to = from + states;
      const pNothing = p[pc + NOTHING];
      for (let k = 0; k <= count; k++) {
        for (let s = 0; s < sums; s++) {
          const a = alpha[from + k * sums + s];
          if (a === 0) continue;
          alpha[to + k * sums + s] += a * pNothing;
          if (k === count) continue;
          const up = to + (k + 1) * sums + s;
          for (let d = 0; d <= MAX_DIGIT && s + d < sums; d++) alpha[up + d] += a * p[pc + d];
        }
      }
      let total = 0;
      for (let j = 0; j < states; j++) total += alpha[to + j];
      scale[i * cellCount + l] = total;
      for (let j = 0; j < states; j++) alpha[to + j] /= total;
    }
    const last = base + cellCount * states + count * sums;
    let z = 0;
    for (let s = 0; s < sums; s++) z += alpha[last + s];
    for (let s = 0; s < sums; s++) probs[i * sums + s] = alpha[last + s] / z;
  }
  return { alpha, scale, probs } satisfies HostForward;
}

/** Gradient of `sum(dy * log(max(probs, 1e-30)))` with respect to the cell probabilities. */
function hostCombineBackward(
  p: Float32Array,
  dy: Float32Array,
  forward: HostForward,
  shape: { b: number; cellCount: number; count: number },
): Float32Array {
  const { b, cellCount, count } = shape;
  const sums = MAX_DIGIT * count + 1;
  const states = (count + 1) * sums;
  const dp = new Float32Array(b * cellCount * NUM_CELL_CLASSES);
  let beta = new Float64Array(states);
  let previous = new Float64Array(states);
  for (let i = 0; i < b; i++) {
    const base = i * (cellCount + 1) * states;
    const last = base + cellCount * states + count * sums;
    let z = 0;
    for (let s = 0; s < sums; s++) z += forward.alpha[last + s];
    // h = d/du log(max(u, eps)); w = d/dq of the loss through u = q / sum(q).
    let hu = 0;
    const h = new Float64Array(sums);
    for (let s = 0; s < sums; s++) {
      const u = forward.probs[i * sums + s];
      h[s] = u > 1e-30 ? dy[i * sums + s] / u : 0;
      hu += h[s] * u;
    }
    beta.fill(0);
    for (let s = 0; s < sums; s++) beta[count * sums + s] = (h[s] - hu) / z;
    for (let l = cellCount - 1; l >= 0; l--) {
      const pc = (i * cellCount + l) * NUM_CELL_CLASSES;
      const a = base + l * states;
      const r = forward.scale[i * cellCount + l];
      const pNothing = p[pc + NOTHING];
      previous.fill(0);
      let gNothing = 0;
      for (let k = 0; k <= count; k++) {
        for (let s = 0; s < sums; s++) {
          const j = k * sums + s;
          const stay = beta[j];
          gNothing += forward.alpha[a + j] * stay;
          let acc = pNothing * stay;
          if (k < count) {
            const up = (k + 1) * sums + s;
            const al = forward.alpha[a + j];
            for (let d = 0; d <= MAX_DIGIT && s + d < sums; d++) {
              const bu = beta[up + d];
              acc += p[pc + d] * bu;
              dp[pc + d] += (al * bu) / r;
            }
          }
          previous[j] = acc / r;
        }
      }
      dp[pc + NOTHING] += gNothing / r;
      [beta, previous] = [previous, beta];
    }
  }
  return dp;
}

/**
 * log P(sum = s | exactly `count` digits), clipped at 1e-30: the log of
 * {@linkcode combineCellProbabilities}, differentiable. On backends that read synchronously
 * (wasm, cpu, native) it runs as a host loop with a hand-written backward pass; elsewhere (webgpu)
 * as tensor ops.
 *
 * @param cells `[b, L, 11]` probabilities (rows summing to 1)
 * @param count number of digits
 * @returns `[b, 9 * count + 1]` log-probabilities
 */
export function logSumDistribution(
  cells: tf.Tensor3D,
  count: number,
  options: { host?: boolean } = {},
): tf.Tensor2D {
  const host = options.host ?? SYNC_BACKENDS.has(tf.getBackend());
  if (!host) {
    return tf.tidy(() =>
      combineCellProbabilities(cells, count).maximum(1e-30).log() as tf.Tensor2D
    );
  }
  const [b, cellCount] = cells.shape;
  const sums = MAX_DIGIT * count + 1;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const p = x.dataSync() as Float32Array;
    const forward = hostCombineForward(p, b, cellCount, count);
    save([x]);
    const logs = Float32Array.from(forward.probs, (u) => Math.log(Math.max(u, 1e-30)));
    return {
      value: tf.tensor2d(logs, [b, sums]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dp = hostCombineBackward(
          saved[0].dataSync() as Float32Array,
          dy.dataSync() as Float32Array,
          forward,
          { b, cellCount, count },
        );
        return tf.tensor3d(dp, [b, cellCount, NUM_CELL_CLASSES]);
      },
    };
  });
  return op(cells) as tf.Tensor2D;
}

/** Config of {@linkcode SumCombine}. */
export interface SumCombineConfig {
  /** Digits per image (default 4). */
  count?: number;
  name?: string;
}

/**
 * Layer: per-cell logits `[b, 1, L, 11]` -> log P(sum | `count` digits) `[b, 9 * count + 1]`.
 * No weights. Each cell's softmax is mixed with a tiny uniform floor, so a confident mistake
 * still leaves a gradient.
 */
export class SumCombine extends tf.layers.Layer {
  /** Class name for serialisation. */
  static className = "SumCombine";
  readonly count: number;

  constructor(config: SumCombineConfig = {}) {
    super({ name: config.name });
    this.count = config.count ?? NUM_DIGITS;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0], MAX_DIGIT * this.count + 1];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const logits = Array.isArray(inputs) ? inputs[0] : inputs; // [b, 1, L, 11]
      const [b] = logits.shape;
      const cells = logits.reshape([b, -1, NUM_CELL_CLASSES]).softmax()
        .mul(1 - CELL_PROBABILITY_FLOOR * NUM_CELL_CLASSES).add(CELL_PROBABILITY_FLOOR);
      return logSumDistribution(cells as tf.Tensor3D, this.count);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), count: this.count };
  }
}

/**
 * Rolls every image of `x` cyclically by about `shift` px (right when positive): by the smallest
 * `k >= |shift|` whose seam column is empty, so no digit is cut; not at all when no such column
 * lies within 40 px. Tensor ops only (any backend).
 *
 * @param x `[b, h, w, 1]` images (background exactly 0)
 * @param shift signed shift in px
 * @returns a new `[b, h, w, 1]` tensor
 */
export function rollAtEmptyColumn(x: tf.Tensor4D, shift: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, , w] = x.shape;
    const sign = shift < 0 ? -1 : 1;
    const candidates = 40;
    const ks = Array.from({ length: candidates }, (_, i) => Math.abs(shift) + i);
    // After rolling by d, new column 0 holds old column (w - d) mod w: that column must be empty.
    const seams = tf.tensor1d(ks.map((k) => (((w - sign * k) % w) + w) % w), "int32");
    const empty = x.sum([1, 3]).equal(0).toFloat(); // [b, w]
    const emptyAt = tf.gather(empty, seams, 1); // [b, candidates]
    const first = emptyAt.mul(tf.range(candidates, 0, -1)).argMax(1); // [b]
    const found = emptyAt.max(1).greater(0);
    const d = tf.where(found, first.add(Math.abs(shift)).mul(sign), tf.zeros(first.shape)); // [b]
    // Source column of output column c: (c - d) mod w, as a row of the [b * w, h] column matrix
    // (one plain gather: batched gathers are wrong on wasm in tfjs 4.22).
    const h = x.shape[1];
    const source = tf.range(0, w, 1, "int32").expandDims(0).sub(d.toInt().expandDims(1))
      .add(w).mod(w).toInt(); // [b, w]
    const rows = source.add(tf.range(0, b * w, w, "int32").expandDims(1)).reshape([-1]).toInt();
    const columns = x.reshape([b, h, w]).transpose([0, 2, 1]).reshape([b * w, h]);
    return tf.gather(columns, rows as tf.Tensor1D).reshape([b, w, h]).transpose([0, 2, 1])
      .reshape([b, h, w, 1]) as tf.Tensor4D;
  });
}

/**
 * Rolls every image of `x` cyclically by about `rise` px down (up when negative): by the smallest
 * `k >= |rise|` whose seam row is empty, so no digit is cut; not at all when no row is empty
 * (the rows' version of {@linkcode rollAtEmptyColumn}). Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images (background exactly 0)
 * @param rise signed shift in px
 * @returns a new `[b, h, w, 1]` tensor
 */
export function rollAtEmptyRow(x: tf.Tensor4D, rise: number): tf.Tensor4D {
  return tf.tidy(() => {
    const turned = x.transpose([0, 2, 1, 3]) as tf.Tensor4D; // [b, w, h, 1]
    return rollAtEmptyColumn(turned, rise).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/** Where the ink of each image lies along one axis: first and last index (float), and whether any. */
interface AxisExtent {
  first: tf.Tensor1D;
  last: tf.Tensor1D;
  any: tf.Tensor1D;
}

/** Where the ink of each image lies, by rows and by columns ({@linkcode inkExtent}). */
export interface InkExtent {
  rows: AxisExtent;
  cols: AxisExtent;
}

/** First and last index of the non-zero entries of each row of `occupied` `[b, n]`. */
function extent(occupied: tf.Tensor2D): AxisExtent {
  const n = occupied.shape[1];
  const first = occupied.mul(tf.range(n, 0, -1)).argMax(1).toFloat() as tf.Tensor1D;
  const last = occupied.mul(tf.range(1, n + 1)).argMax(1).toFloat() as tf.Tensor1D;
  return { first, last, any: occupied.max(1).greater(0) as tf.Tensor1D };
}

/**
 * The rows and columns that hold ink in each image of `x` `[b, h, w, 1]`, for
 * {@linkcode zoomAtInk}; computed once for all the zoomed views of a batch.
 */
export function inkExtent(x: tf.Tensor4D): InkExtent {
  return {
    rows: extent(x.sum([2, 3]).greater(0).toFloat() as tf.Tensor2D), // ink per row [b, h]
    cols: extent(x.sum([1, 3]).greater(0).toFloat() as tf.Tensor2D), // ink per column [b, w]
  };
}

/**
 * Zooms every image of `x` by `zoom` about the centre of its ink (bilinear, `cropAndResize`), less
 * where the ink would not fit: the ink's box (plus a pixel) always stays inside the image, so no
 * digit is cut. An image without ink is left as it is. Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images (background exactly 0)
 * @param zoom at least 1 (1: only moves the ink's centre to the image's centre)
 * @param ink `inkExtent(x)`, when the caller has it already
 * @returns a new `[b, h, w, 1]` tensor
 */
export function zoomAtInk(x: tf.Tensor4D, zoom: number, ink?: InkExtent): tf.Tensor4D {
  if (!(zoom >= 1)) throw new RangeError(`zoomAtInk: zoom must be at least 1, got ${zoom}`);
  return tf.tidy(() => {
    const extents = ink ?? inkExtent(x);
    const [b, h, w] = x.shape;
    // Each axis as much as `zoom` and its own room allow.
    const rows = fitZoom(extents.rows, h, tf.fill([b], zoom));
    const cols = fitZoom(extents.cols, w, tf.fill([b], zoom));
    return resampleAtInk(x, extents, rows, cols);
  });
}

/** The zoom along one axis of `n` pixels: `zoom`, less where the ink would not fit (`[b]`). */
function fitZoom({ first, last, any }: AxisExtent, n: number, zoom: tf.Tensor1D): tf.Tensor1D {
  const fits = tf.scalar(n - 1).div(last.sub(first).add(2).maximum(1));
  return tf.where(any, fits.minimum(zoom), tf.onesLike(fits)) as tf.Tensor1D;
}

/**
 * Resamples each image about the centre of its ink, by `rowZoom` and `colZoom` (`[b]`, below 1
 * shrinks); images without ink keep their place.
 */
function resampleAtInk(
  x: tf.Tensor4D,
  ink: InkExtent,
  rowZoom: tf.Tensor1D,
  colZoom: tf.Tensor1D,
): tf.Tensor4D {
  const [b, h, w] = x.shape;
  /** The crop box along one axis, in `cropAndResize`'s 0..1 coordinates. */
  const axis = ({ first, last, any }: AxisExtent, n: number, scale: tf.Tensor1D) => {
    const centre = tf.where(any, first.add(last).div(2 * (n - 1)), tf.fill([b], 0.5));
    const half = tf.scalar(0.5).div(scale);
    return { lo: centre.sub(half), hi: centre.add(half) };
  };
  const rows = axis(ink.rows, h, rowZoom);
  const cols = axis(ink.cols, w, colZoom);
  const boxes = tf.stack([rows.lo, cols.lo, rows.hi, cols.hi], 1) as tf.Tensor2D; // [b, 4]
  const index = tf.range(0, b, 1, "int32") as tf.Tensor1D;
  return tf.image.cropAndResize(x, boxes, index, [h, w], "bilinear", 0) as tf.Tensor4D;
}

/**
 * When to bring an image's digits to another height at inference ({@linkcode rescaleDigits}):
 * where every group of ink is shorter than `below` px, or (at least three groups) every one is
 * taller than `above` px ({@linkcode rescaleFactors}), the digits are scaled to about `to` px.
 */
export interface DigitRescale {
  below: number;
  above: number;
  to: number;
}

/** Pixels at least this fraction of the image's brightest count as ink for {@linkcode digitHeights}. */
const HEIGHT_INK_FRACTION = 0.4;
/** Column groups narrower than this (px) are left out of {@linkcode digitHeights} (specks). */
const HEIGHT_MIN_GROUP_WIDTH = 4;
/** Most and least {@linkcode rescaleDigits} scales an image. */
const RESCALE_LIMITS = [0.5, 2] as const;

/**
 * The height of the digits in each image, estimated without reading them: the ink (pixels at
 * least 40% of the image's brightest) splits into groups of adjacent columns at empty columns,
 * and the groups at least 4 px wide give their ink heights: their median, least and most (0 for
 * an image without ink). Digits that share columns form one group, taller than either where they
 * stand at different heights, so `least` and `most` say more about whether all digits are small
 * or large than the median does. Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images
 * @returns `[b]` heights in px
 */
export function digitHeights(x: tf.Tensor4D): DigitHeights {
  return tf.tidy(() => {
    const [b, h, w] = x.shape;
    const groups = Math.ceil(w / 2); // at most one group in every other column
    const brightest = x.max([1, 2, 3], true);
    const ink = x.greater(brightest.mul(HEIGHT_INK_FRACTION)).logicalAnd(brightest.greater(0))
      .toFloat().reshape([b, h, w]);
    const inked = ink.max(1); // [b, w]
    // Each inked column's first and last inked row (float).
    const first = ink.mul(tf.range(h, 0, -1).reshape([1, h, 1])).argMax(1).toFloat(); // [b, w]
    const last = ink.mul(tf.range(1, h + 1).reshape([1, h, 1])).argMax(1).toFloat(); // [b, w]
    // Group of each column: count of group starts up to it (an inked column after an empty one).
    const before = tf.concat([tf.zeros([b, 1]), inked.slice([0, 0], [b, w - 1])], 1);
    const starts = inked.mul(tf.scalar(1).sub(before));
    const group = tf.where(inked.greater(0), starts.cumsum(1).sub(1), tf.fill([b, w], -1)).toInt();
    const member = tf.oneHot(group, groups).toFloat(); // [b, w, groups]
    const width = member.sum(1); // [b, groups]
    const top = tf.scalar(h).sub(member.mul(tf.scalar(h).sub(first).expandDims(2)).max(1));
    const bottom = member.mul(last.add(1).expandDims(2)).max(1).sub(1);
    const valid = width.greaterEqual(HEIGHT_MIN_GROUP_WIDTH);
    const heights = tf.where(
      valid,
      bottom.sub(top).add(1),
      tf.fill([b, groups], -1),
    ) as tf.Tensor2D;
    // Median of the valid heights: they sort first (the others are -1).
    const sorted = tf.topk(heights, groups).values; // [b, groups], descending
    const n = valid.toFloat().sum(1); // [b]
    const pick = (index: tf.Tensor) =>
      tf.oneHot(index.toInt(), groups).toFloat().mul(sorted).sum(1);
    const lower = pick(n.sub(1).div(2).floor().maximum(0));
    const upper = pick(n.div(2).floor().minimum(groups - 1));
    const any = n.greater(0);
    const zero = tf.zeros([b]);
    return {
      median: tf.where(any, lower.add(upper).div(2), zero) as tf.Tensor1D,
      least: tf.where(any, pick(n.sub(1).maximum(0)), zero) as tf.Tensor1D,
      most: tf.where(any, sorted.slice([0, 0], [b, 1]).reshape([b]), zero) as tf.Tensor1D,
      groups: n as tf.Tensor1D,
    };
  });
}

/** What {@linkcode digitHeights} gives per image: the groups' median, least and most height. */
export interface DigitHeights {
  median: tf.Tensor1D;
  least: tf.Tensor1D;
  most: tf.Tensor1D;
  /** How many groups (at least 4 px wide) there are. */
  groups: tf.Tensor1D;
}

/**
 * Groups of ink {@linkcode rescaleDigits} needs before it shrinks an image: with fewer, digits that
 * share columns at different heights may make every group look tall.
 */
const RESCALE_MIN_GROUPS_TO_SHRINK = 3;

/**
 * How {@linkcode rescaleDigits} scales each image: `rescale.to / median height` where every group
 * of ink is shorter than `rescale.below`, or there are at least three groups and every one is
 * taller than `rescale.above` ({@linkcode digitHeights}), within 0.5..2; else 1. (A group can hold
 * several digits, never less than a whole one, so it overstates heights, never understates them.)
 *
 * @param x `[b, h, w, 1]` images
 * @returns `[b]` scale factors
 */
export function rescaleFactors(x: tf.Tensor4D, rescale: DigitRescale): tf.Tensor1D {
  return tf.tidy(() => {
    const { median, least, most, groups } = digitHeights(x);
    const large = least.greater(rescale.above)
      .logicalAnd(groups.greaterEqual(RESCALE_MIN_GROUPS_TO_SHRINK));
    const outside = median.greater(0).logicalAnd(most.less(rescale.below).logicalOr(large));
    const factor = tf.scalar(rescale.to).div(median.maximum(1))
      .clipByValue(RESCALE_LIMITS[0], RESCALE_LIMITS[1]);
    return tf.where(outside, factor, tf.onesLike(factor)) as tf.Tensor1D;
  });
}

/** Where and how much {@linkcode rescaleDigits} scales each image (`[b]` each). */
interface RescaleGeometry {
  /** The scale of each image, 1 where it is left as it is. */
  scales: tf.Tensor1D;
  /** Whether it is left as it is. */
  same: tf.Tensor1D;
  /** The column its ink is centred on. */
  centres: tf.Tensor1D;
  ink: InkExtent;
}

/**
 * {@linkcode rescaleDigits}' scales without the resampling: what {@linkcode rescaleFactors}
 * asks, one scale for both axes, less where either axis would not fit (but an image to enlarge
 * is never shrunk). Call inside a tidy.
 */
function rescaleGeometry(x: tf.Tensor4D, rescale: DigitRescale): RescaleGeometry {
  const [, h, w] = x.shape;
  const wanted = rescaleFactors(x, rescale);
  const ink = inkExtent(x);
  const fitting = fitZoom(ink.rows, h, wanted).minimum(fitZoom(ink.cols, w, wanted));
  const scale = tf.where(wanted.greater(1), fitting.maximum(1), fitting);
  const same = wanted.equal(1) as tf.Tensor1D;
  return {
    scales: tf.where(same, tf.onesLike(scale), scale) as tf.Tensor1D,
    same,
    centres: ink.cols.first.add(ink.cols.last).div(2) as tf.Tensor1D,
    ink,
  };
}

/**
 * Brings the digits of each image to about `rescale.to` px where {@linkcode rescaleFactors} says
 * they are unusually small or large: scaled about the centre of the ink, the same in both
 * directions, and enlarged only as far as the ink fits. Other images are returned unchanged.
 * Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images (background exactly 0)
 * @param rescale when and to what height
 * @returns the images, the scale each got (`[b]`; 1 where unchanged) and the column its ink is
 *   centred on (`[b]`): column `j` of a rescaled image shows column
 *   `centre + (j - (w - 1) / 2) / scale` of the original
 */
export function rescaleDigits(
  x: tf.Tensor4D,
  rescale: DigitRescale,
): { images: tf.Tensor4D; scales: tf.Tensor1D; centres: tf.Tensor1D } {
  return tf.tidy(() => {
    const { scales, same, centres, ink } = rescaleGeometry(x, rescale);
    const moved = resampleAtInk(x, ink, scales, scales);
    const images = tf.where(same.reshape([-1, 1, 1, 1]), x, moved) as tf.Tensor4D;
    return { images, scales, centres };
  });
}

/**
 * When and how {@linkcode cleanNoise} cleans an image at inference. The course's composites are
 * black (exactly 0) wherever there is no ink; noise on every pixel leaves about half the background
 * above 0, which hides the empty columns and rows the views roll at and buries the digits' edges.
 */
export interface NoiseCleaning {
  /** An image is noisy when fewer than this fraction of its dark pixels are exactly 0 (0..1). */
  emptyBelow: number;
  /** Ink is where the image smoothed by a 3 x 3 binomial filter reaches this (0..1). */
  inkAbove: number;
  /** Subtracted from the ink and its neighbours kept, the rest stretched back to 0..1. */
  floor: number;
}

/** Pixels below this (0..1) are dark for {@linkcode noisyImages}: background or the ink's edges. */
const NOISE_DARK_BELOW = 0.5;

/**
 * Which images {@linkcode cleanNoise} counts as noisy: fewer than `emptyBelow` of their dark pixels
 * (below half the full brightness) are exactly 0. Counting dark pixels only, not all, keeps large
 * or thick digits, which cover more of the image, from looking noisy. Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images in 0..1
 * @param emptyBelow fraction of the dark pixels (0..1)
 * @returns `[b]` booleans
 */
export function noisyImages(x: tf.Tensor4D, emptyBelow: number): tf.Tensor1D {
  return tf.tidy(() => {
    const dark = x.less(NOISE_DARK_BELOW).toFloat().sum([1, 2, 3]);
    const empty = x.lessEqual(0).toFloat().sum([1, 2, 3]);
    return empty.less(dark.mul(emptyBelow)) as tf.Tensor1D;
  });
}

/**
 * Cleans the images {@linkcode noisyImages} flags: the ink is found where the image smoothed by a
 * 3 x 3 binomial filter reaches `inkAbove` (smoothing averages the noise away, not the strokes),
 * widened by a pixel so the strokes' soft edges stay; everything else becomes 0, and the kept
 * pixels lose `floor` and are stretched back to 0..1. Other images are returned bit for bit.
 * Tensor ops only.
 *
 * @param x `[b, h, w, 1]` images in 0..1
 * @param cleaning when and how
 * @returns the images and which were cleaned (`[b]` booleans)
 */
export function cleanNoise(
  x: tf.Tensor4D,
  cleaning: NoiseCleaning,
): { images: tf.Tensor4D; cleaned: tf.Tensor1D } {
  return tf.tidy(() => {
    const cleaned = noisyImages(x, cleaning.emptyBelow);
    const binomial = [1, 2, 1].flatMap((a) => [1, 2, 1].map((b) => a * b / 16));
    const smooth = tf.conv2d(x, tf.tensor4d(binomial, [3, 3, 1, 1]), 1, "same"); // [b, h, w, 1]
    const ink = tf.maxPool(
      smooth.greaterEqual(cleaning.inkAbove).toFloat() as tf.Tensor4D,
      3,
      1,
      "same",
    );
    const kept = x.mul(ink).sub(cleaning.floor).relu().div(1 - cleaning.floor);
    const images = tf.where(cleaned.reshape([-1, 1, 1, 1]), kept, x) as tf.Tensor4D;
    return { images, cleaned };
  });
}

/**
 * One test-time view of an image: zoomed by `zoom` about its ink ({@linkcode zoomAtInk}), then
 * rolled `rise` px down ({@linkcode rollAtEmptyRow}) and `shift` px right
 * ({@linkcode rollAtEmptyColumn}). Every part defaults to none.
 */
export interface TestView {
  /** Horizontal roll (px, right when positive). */
  shift?: number;
  /** Vertical roll (px, down when positive). */
  rise?: number;
  /** Zoom about the ink's centre (at least 1). */
  zoom?: number;
}

/**
 * The view `view` of every image of `x` (a new tensor; the identity view is a copy).
 *
 * @param x `[b, h, w, 1]` images (background exactly 0)
 * @param view zoom, then vertical, then horizontal roll
 * @param ink `inkExtent(x)`, when the caller has it already (zoomed views)
 * @returns `[b, h, w, 1]`
 */
export function makeView(x: tf.Tensor4D, view: TestView, ink?: InkExtent): tf.Tensor4D {
  return tf.tidy(() => {
    let y = view.zoom !== undefined && view.zoom !== 1 ? zoomAtInk(x, view.zoom, ink) : x;
    if (view.rise) y = rollAtEmptyRow(y, view.rise);
    if (view.shift) y = rollAtEmptyColumn(y, view.shift);
    return y === x ? x.clone() : y;
  });
}

/** Config of {@linkcode TestViews} and {@linkcode MeanOverViews}. */
export interface TestViewsConfig {
  /** The views at inference, the first normally the image as it is. */
  views?: TestView[];
  /** Horizontal-roll-only views (px), as checkpoints before zoomed views wrote them. */
  shifts?: number[];
  /**
   * {@linkcode TestViews} only: bring digits of an unusual height to a usual one before the views
   * are made ({@linkcode rescaleDigits}); none when absent (checkpoints from before it).
   */
  rescale?: DigitRescale;
  /**
   * {@linkcode TestViews} only: clean noisy images first ({@linkcode cleanNoise}), before any
   * rescaling; none when absent (checkpoints from before it).
   */
  clean?: NoiseCleaning;
  name?: string;
}

/** Checks a {@linkcode DigitRescale} read from a config or given by a caller. */
function checkRescale(rescale: DigitRescale): DigitRescale {
  const { below, above, to } = rescale ?? {};
  if (![below, above, to].every((v) => typeof v === "number" && v > 0) || below > above) {
    throw new RangeError(`TestViews: invalid rescale ${JSON.stringify(rescale)}`);
  }
  return { below, above, to };
}

/** Checks a {@linkcode NoiseCleaning} read from a config or given by a caller. */
function checkCleaning(clean: NoiseCleaning): NoiseCleaning {
  const { emptyBelow, inkAbove, floor } = clean ?? {};
  const unit = (v: unknown) => typeof v === "number" && v >= 0 && v < 1;
  if (![emptyBelow, inkAbove, floor].every(unit)) {
    throw new RangeError(`TestViews: invalid clean ${JSON.stringify(clean)}`);
  }
  return { emptyBelow, inkAbove, floor };
}

/** Checks a view list read from a config or given by a caller. */
function checkViews(views: TestView[]): TestView[] {
  for (const view of views) {
    const ok = typeof view === "object" && view !== null &&
      [view.shift, view.rise].every((v) => v === undefined || Number.isInteger(v)) &&
      (view.zoom === undefined || view.zoom >= 1);
    if (!ok) throw new RangeError(`TestViews: invalid view ${JSON.stringify(view)}`);
  }
  return views.map((v) => ({ ...v }));
}

/**
 * A layer that is the identity in training and, at inference, works on the test-time views given
 * by `views` (or `shifts`; one view: always the identity).
 */
abstract class ViewsLayer extends tf.layers.Layer {
  readonly views: TestView[];

  constructor(config: TestViewsConfig = {}) {
    super({ name: config.name });
    this.views = checkViews(config.views ?? (config.shifts ?? [0]).map((shift) => ({ shift })));
  }

  /** What the layer does at inference (unless {@linkcode passesThrough}). */
  protected abstract atInference(x: tf.Tensor): tf.Tensor;

  /** Whether inference, too, passes the input through (one view: the identity). */
  protected get passesThrough(): boolean {
    return this.views.length <= 1;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (kwargs?.training || this.passesThrough) return x.clone();
    return tf.tidy(() => this.atInference(x));
  }

  override getConfig(): tf.serialization.ConfigDict {
    // Horizontal rolls only: written as `shifts`, as before, so such checkpoints stay as they were.
    const rollsOnly = this.views.every((v) => !v.rise && (v.zoom === undefined || v.zoom === 1));
    return rollsOnly
      ? { ...super.getConfig(), shifts: this.views.map((v) => v.shift ?? 0) }
      : { ...super.getConfig(), views: this.views as unknown as tf.serialization.ConfigDictArray };
  }
}

/**
 * Layer: at inference, stacks each image with its other views ({@linkcode makeView}:
 * `[b, ...]` -> `[views * b, ...]`, view-major); in training it passes the batch through. With
 * {@linkcode MeanOverViews} at the end this is test-time augmentation inside the model:
 * `evaluate`, `predict` and the sweep all get it.
 */
export class TestViews extends ViewsLayer {
  /** Class name for serialisation. */
  static className = "TestViews";
  /** Digit heights brought to a usual one first, if any ({@linkcode TestViewsConfig.rescale}). */
  readonly rescale?: DigitRescale;
  /** Noisy images cleaned first, if at all ({@linkcode TestViewsConfig.clean}). */
  readonly clean?: NoiseCleaning;

  constructor(config: TestViewsConfig = {}) {
    super(config);
    if (config.rescale !== undefined) this.rescale = checkRescale(config.rescale);
    if (config.clean !== undefined) this.clean = checkCleaning(config.clean);
  }

  protected override get passesThrough(): boolean {
    return super.passesThrough && this.rescale === undefined && this.clean === undefined;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config = super.getConfig();
    return {
      ...config,
      ...(this.rescale ? { rescale: { ...this.rescale } } : {}),
      ...(this.clean ? { clean: { ...this.clean } } : {}),
    };
  }

  protected atInference(x: tf.Tensor): tf.Tensor {
    const input = this.clean ? cleanNoise(x as tf.Tensor4D, this.clean).images : x as tf.Tensor4D;
    const images = this.rescale ? rescaleDigits(input, this.rescale).images : input;
    // The ink's extent once for all zoomed views (the layer's call runs in a tidy).
    const zooms = this.views.some((v) => v.zoom !== undefined && v.zoom !== 1);
    const ink = zooms ? inkExtent(images) : undefined;
    return tf.concat(this.views.map((view) => makeView(images, view, ink)), 0);
  }
}

/**
 * Layer: at inference, averages the log-probabilities of the views made by {@linkcode TestViews}
 * (`[views * b, k]` -> `[b, k]`) and renormalises them (a geometric mean); in training, identity.
 */
export class MeanOverViews extends ViewsLayer {
  /** Class name for serialisation. */
  static className = "MeanOverViews";

  protected atInference(x: tf.Tensor): tf.Tensor {
    const views = this.views.length;
    const [n, k] = x.shape; // [views * b, k]
    const mean = x.reshape([views, n / views, k]).mean(0); // [b, k]
    return mean.sub(mean.logSumExp(1, true));
  }
}

/** Register SumNet's serialisable classes (called through `registerCustomLayers()`). */
export function registerLayers(): void {
  tf.serialization.registerClass(SumCombine);
  tf.serialization.registerClass(TestViews);
  tf.serialization.registerClass(MeanOverViews);
}

/** One digit SumNet reads in an image. */
export interface DigitReading {
  /** The digit, 0..9. */
  digit: number;
  /** Index of the 8 px cell its centre lies in, 0..20. */
  cell: number;
  /**
   * Centre column of that cell (the digit's centre, to +-4 px), in the input image: where the
   * model rescaled the image first ({@linkcode rescaleDigits}), mapped back to the input.
   */
  centre: number;
  /** Columns `[start, end)` of the cell, in the input image (mapped back likewise). */
  columns: [number, number];
  /** The network's probability that this cell holds this digit. */
  probability: number;
  /** The network's probability that a digit (any) is centred in this cell. */
  presence: number;
  /** The most likely other reading of the cell: a digit, or `null` for "nothing". */
  runnerUp: { digit: number | null; probability: number };
}

/** SumNet's explanation of one image. */
export interface Explanation {
  /** Predicted sum (argmax of the sum distribution). */
  sum: number;
  /** Its probability. */
  sumProbability: number;
  /** `[37]` P(sum = s). */
  sumDistribution: Float32Array;
  /**
   * The four digits, left to right: the most likely reading with exactly four digits that adds up
   * to {@linkcode Explanation.sum} (so the read-out always agrees with the predicted sum).
   */
  digits: DigitReading[];
  /** `[21, 11]` per-cell probabilities (digits 0..9, then nothing), row-major. */
  cells: Float32Array;
  /** What the model's {@linkcode TestViews} did to the image before its views (absent: nothing). */
  prepared?: Preparation;
}

/** What {@linkcode TestViews} did to one image before its views. */
export interface Preparation {
  /** Whether it was cleaned as noisy ({@linkcode cleanNoise}). */
  cleaned: boolean;
  /** The scale its digits were brought to a usual height by ({@linkcode rescaleDigits}; 1: none). */
  scale: number;
}

/**
 * Most likely assignment of the cells (digit or nothing) with exactly `count` digits adding up to
 * `target`, by dynamic programming over (cell, digits so far, partial sum) on log-probabilities.
 *
 * @param cells `[L, 11]` probabilities, row-major
 * @param count number of digits
 * @param target required sum
 * @returns per cell the chosen class (0..9 or 10 = nothing), or null when no assignment exists
 */
export function bestReading(cells: Float32Array, count: number, target: number): Int8Array | null {
  const cellCount = cells.length / NUM_CELL_CLASSES;
  const sums = MAX_DIGIT * count + 1;
  if (!(target >= 0 && target < sums)) return null;
  const states = (count + 1) * sums;
  // score[l][k * sums + s]: best log-probability of cells 0..l-1 with k digits summing to s.
  let score = new Float64Array(states).fill(-Infinity);
  score[0] = 0;
  const choice = new Int8Array(cellCount * states).fill(-1);
  for (let l = 0; l < cellCount; l++) {
    const next = new Float64Array(states).fill(-Infinity);
    const logp = Array.from(
      { length: NUM_CELL_CLASSES },
      (_, c) => Math.log(Math.max(cells[l * NUM_CELL_CLASSES + c], 1e-30)),
    );
    for (let k = 0; k <= count; k++) {
      for (let s = 0; s < sums; s++) {
        const here = score[k * sums + s];
        if (here === -Infinity) continue;
        const keep = here + logp[NOTHING];
        if (keep > next[k * sums + s]) {
          next[k * sums + s] = keep;
          choice[l * states + k * sums + s] = NOTHING;
        }
        if (k === count) continue;
        for (let d = 0; d <= MAX_DIGIT && s + d < sums; d++) {
          const to = (k + 1) * sums + s + d;
          const value = here + logp[d];
          if (value > next[to]) {
            next[to] = value;
            choice[l * states + to] = d;
          }
        }
      }
    }
    score = next;
  }
  if (score[count * sums + target] === -Infinity) return null;
  const out = new Int8Array(cellCount);
  let k = count;
  let s = target;
  for (let l = cellCount - 1; l >= 0; l--) {
    const c = choice[l * states + k * sums + s];
    out[l] = c;
    if (c !== NOTHING) {
      k -= 1;
      s -= c;
    }
  }
  return out;
}

/**
 * Per-cell probabilities (of the unshifted view) and sum distributions (over all test-time views)
 * of a batch, in inference mode.
 *
 * @param model a SumNet
 * @param x `[b, 40, 168, 1]` float32 in [0, 1]
 * @returns `cells` `[b, 21, 11]` and `sums` `[b, 37]`, flattened
 */
export async function predictCells(
  model: tf.LayersModel,
  x: tf.Tensor4D,
): Promise<{ cells: Float32Array; sums: Float32Array }> {
  const b = x.shape[0];
  const logitsLayer = model.getLayer(CELL_LOGITS_LAYER);
  const probe = tf.model({
    inputs: model.inputs,
    outputs: [logitsLayer.output as tf.SymbolicTensor, model.outputs[0]],
  });
  const [cells, sums] = tf.tidy(() => {
    // logits: [views * b, 1, 21, 11], view-major (the unshifted image first); sums: [b, 37]
    // One pass over the whole batch: `predict` would split it into batches of 32 and interleave
    // the views of each.
    const [logits, logSums] = probe.apply(x, { training: false }) as tf.Tensor[];
    const first = logits.slice([0, 0, 0, 0], [b, 1, NUM_CELLS, NUM_CELL_CLASSES]);
    return [first.reshape([b, -1, NUM_CELL_CLASSES]).softmax(), logSums.exp()];
  });
  try {
    return {
      cells: await cells.data() as Float32Array,
      sums: await sums.data() as Float32Array,
    };
  } finally {
    tf.dispose([cells, sums]);
  }
}

/** Builds the explanation of one image from its cell probabilities and sum distribution. */
function explainFrom(
  cells: Float32Array,
  sums: Float32Array,
  prepared: Preparation = { cleaned: false, scale: 1 },
  toInput: (column: number) => number = (j) => j,
): Explanation {
  let sum = 0;
  for (let s = 1; s < sums.length; s++) if (sums[s] > sums[sum]) sum = s;
  const reading = bestReading(cells, NUM_DIGITS, sum);
  const digits: DigitReading[] = [];
  reading?.forEach((c, cell) => {
    if (c === NOTHING) return;
    const row = cells.subarray(cell * NUM_CELL_CLASSES, (cell + 1) * NUM_CELL_CLASSES);
    let runner: number = c === 0 ? 1 : 0;
    for (let k = 0; k < NUM_CELL_CLASSES; k++) if (k !== c && row[k] > row[runner]) runner = k;
    digits.push({
      digit: c,
      cell,
      centre: Math.round(toInput(cell * CELL_WIDTH + CELL_WIDTH / 2)),
      columns: [
        Math.max(0, Math.floor(toInput(cell * CELL_WIDTH))),
        Math.min(IMAGE_WIDTH, Math.ceil(toInput((cell + 1) * CELL_WIDTH))),
      ],
      probability: row[c],
      presence: 1 - row[NOTHING],
      runnerUp: { digit: runner === NOTHING ? null : runner, probability: row[runner] },
    });
  });
  return { sum, sumProbability: sums[sum], sumDistribution: sums, digits, cells, prepared };
}

/**
 * What SumNet sees in each image of a batch: the predicted sum, its distribution, and the four
 * digits with their places and probabilities.
 *
 * @param model a SumNet (trained)
 * @param x `[b, 40, 168, 1]` float32 in [0, 1]
 * @returns one explanation per image
 */
export async function explainBatch(
  model: tf.LayersModel,
  x: tf.Tensor4D,
): Promise<Explanation[]> {
  const b = x.shape[0];
  const { cells, sums } = await predictCells(model, x);
  const prepared = await preparations(model, x);
  const per = NUM_CELLS * NUM_CELL_CLASSES;
  return Array.from(
    { length: b },
    (_, i) =>
      explainFrom(
        cells.slice(i * per, (i + 1) * per),
        sums.slice(i * NUM_SUMS_OUT, (i + 1) * NUM_SUMS_OUT),
        prepared[i].preparation,
        prepared[i].toInput,
      ),
  );
}

/**
 * Per image, what the model's {@linkcode TestViews} did to it before its views, and the column of
 * `x` that column `j` of what the cells read shows: itself, unless the image was rescaled
 * ({@linkcode rescaleDigits}). The model's own steps, without resampling the images again.
 */
async function preparations(
  model: tf.LayersModel,
  x: tf.Tensor4D,
): Promise<{ preparation: Preparation; toInput: (j: number) => number }[]> {
  const b = x.shape[0];
  const same = (j: number) => j;
  const layer = model.layers.find((l) => l instanceof TestViews) as TestViews | undefined;
  const { rescale, clean } = layer ?? {};
  const [flags, scales, centres] = tf.tidy(() => {
    const cleaned = clean ? cleanNoise(x, clean) : { images: x, cleaned: tf.zeros([b]) };
    // The model rescales what it cleaned (cleaning moves no column).
    const geometry = rescale ? rescaleGeometry(cleaned.images, rescale) : undefined;
    return [cleaned.cleaned, geometry?.scales ?? tf.ones([b]), geometry?.centres ?? tf.zeros([b])];
  });
  const [f, s, c] = await Promise.all([flags.data(), scales.data(), centres.data()]);
  tf.dispose([flags, scales, centres]);
  const middle = (IMAGE_WIDTH - 1) / 2;
  return Array.from(s, (scale, i) => ({
    preparation: { cleaned: f[i] !== 0, scale },
    toInput: scale === 1 ? same : (j: number) => c[i] + (j - middle) / scale,
  }));
}

/**
 * What SumNet sees in one image (see {@linkcode explainBatch}).
 *
 * @param model a SumNet (trained)
 * @param image `[40, 168]` uint8 pixels (0..255) or float32 in [0, 1]
 * @returns the explanation
 */
export async function explainImage(
  model: tf.LayersModel,
  image: Uint8Array | Float32Array,
): Promise<Explanation> {
  if (image.length !== IMAGE_SIZE) {
    throw new Error(
      `explainImage(): expected ${IMAGE_HEIGHT} x ${IMAGE_WIDTH} = ${IMAGE_SIZE} pixels, got ${image.length}`,
    );
  }
  const x = tf.tidy(() => {
    const t = tf.tensor4d(Float32Array.from(image), [1, IMAGE_HEIGHT, IMAGE_WIDTH, 1]);
    return image instanceof Uint8Array ? t.div(255) : t;
  }) as tf.Tensor4D;
  try {
    return (await explainBatch(model, x))[0];
  } finally {
    x.dispose();
  }
}
