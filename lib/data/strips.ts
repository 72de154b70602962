/**
 * MNIST digits for transfer learning: SumNet's first stage learns to find and read single digits
 * from MNIST's own labelled 28 x 28 training digits before it ever sees a composite.
 *
 * {@linkcode synthesizeStrips} pastes random MNIST training digits into 40 x 168 strips with its
 * own, deliberately broad augmentation (independent of the data generator's layout): 2..5 digits,
 * each resized to a box of 22..40 px (ink about 16..29 px tall), at a random height, with random
 * gaps from overlapping to wide, sometimes starting or ending near a border, and optionally turned,
 * slanted and bent ({@linkcode StripLayout.rotationMaxDeg}, {@linkcode StripLayout.shearMaxPct},
 * {@linkcode StripLayout.elasticPx}). Each strip comes
 * with a per-cell target: the image is cut into {@linkcode NUM_CELLS} columns of
 * {@linkcode CELL_WIDTH} px, and a cell's target is the class of the digit whose box centre lies
 * in it, or {@linkcode NOTHING} (no digit centred there). The targets come from MNIST's labels
 * and our own placement; the composites' digits and positions are never used.
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
  NUM_CELLS,
} from "../constants.ts";
import { type DigitSource, loadMnist } from "./generate.ts";
import { applyEffects, type ConditionEffects } from "./effects.ts";
import { type Batch, type BatchSource } from "./batch.ts";

// SumNet's cell geometry lives in constants.ts (browser-safe); re-exported here where it is used.
export { CELL_WIDTH, NOTHING, NUM_CELL_CLASSES, NUM_CELLS } from "../constants.ts";

/** Side of an MNIST image. */
const MNIST_SIDE = 28;
/** Pixels in an MNIST image. */
const MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE;
/** `i / 255` as float32 for every byte value. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, i) => i / 255);

/** Augmentation ranges of {@linkcode synthesizeStrips}. */
export interface StripLayout {
  /** Fewest digits in a strip. */
  digitsMin: number;
  /** Most digits in a strip. */
  digitsMax: number;
  /** Smallest side of the square box a 28 x 28 digit is resized to. */
  boxMin: number;
  /** Largest box side. */
  boxMax: number;
  /** Smallest distance between neighbouring box centres (> CELL_WIDTH: one digit per cell). */
  centreGapMin: number;
  /** Largest distance between neighbouring box centres. */
  centreGapMax: number;
  /** How far (px) a box may stick out above or below the image. */
  verticalOverhang: number;
  /** Narrowest box width, in % of its height (100 with `aspectMaxPct` 100: square boxes). */
  aspectMinPct: number;
  /** Widest box width, in % of its height. */
  aspectMaxPct: number;
  /** Largest rotation of a digit about its box centre, in degrees either way (0: upright). */
  rotationMaxDeg: number;
  /** Largest horizontal shear (slant) of a digit, in % of its height either way (0: none). */
  shearMaxPct: number;
  /**
   * Largest elastic displacement, in MNIST px either way (0: none): each digit is bent by a smooth
   * random field, drawn at 4 x 4 points over its 28 x 28 image and interpolated between them.
   */
  elasticPx: number;
}

/** SumNet's pretraining augmentation. */
export const DEFAULT_STRIP_LAYOUT: Readonly<StripLayout> = Object.freeze({
  digitsMin: 2,
  digitsMax: 5,
  boxMin: 22,
  boxMax: 40,
  centreGapMin: 10,
  centreGapMax: 50,
  verticalOverhang: 3,
  aspectMinPct: 100,
  aspectMaxPct: 100,
  rotationMaxDeg: 0,
  shearMaxPct: 0,
  elasticPx: 0,
});

/**
 * Random changes of how the ink looks, drawn anew for every strip (the robust variant's pretraining;
 * off by default). Each effect is applied to a strip with probability `probability`, independently of
 * the others, with a strength drawn uniformly from its range; the operations are
 * `applyEffects`' (stroke, then blur, contrast, noise).
 */
export interface StripEffects {
  /** Chance that each effect is applied to a strip (0 turns them all off). */
  probability: number;
  /** Stroke change: one step of gray erosion or dilation, blended in at 0..100%. */
  stroke: boolean;
  /** Largest Gaussian blur sigma (px). */
  blurSigmaMax: number;
  /** Faintest ink: ink multiplied by a factor from this up to 1. */
  contrastMin: number;
  /** Largest sigma (gray levels) of noise added to every pixel. */
  noiseSigmaMax: number;
}

/** No effects: strips look like MNIST's own ink (the shipped recipe). */
export const NO_STRIP_EFFECTS: Readonly<StripEffects> = Object.freeze({
  probability: 0,
  stroke: false,
  blurSigmaMax: 0,
  contrastMin: 1,
  noiseSigmaMax: 0,
});

/**
 * Draws one strip's effects from `ranges` with `random` (uniform in [0, 1)).
 *
 * @returns the effects for `applyEffects`, and a seed for its noise
 */
export function drawStripEffects(
  ranges: StripEffects,
  random: () => number,
): { effects: ConditionEffects; seed: number } {
  const effects: ConditionEffects = {};
  const chance = () => ranges.probability > 0 && random() < ranges.probability;
  if (ranges.stroke && chance()) {
    effects.stroke = random() < 0.5 ? -1 : 1;
    effects.strokeMix = random();
  }
  if (ranges.blurSigmaMax > 0 && chance()) effects.blurSigma = random() * ranges.blurSigmaMax;
  if (ranges.contrastMin < 1 && chance()) {
    effects.contrast = ranges.contrastMin + (1 - ranges.contrastMin) * random();
  }
  if (ranges.noiseSigmaMax > 0 && chance()) effects.noiseSigma = random() * ranges.noiseSigmaMax;
  return { effects, seed: Math.floor(random() * 4294967296) };
}

/** Options of {@linkcode synthesizeStrips}. */
export interface StripOptions {
  /** Number of strips. */
  count: number;
  /** Seed of the placement generator (same seed, same strips). */
  seed: number;
  /** Overrides of {@linkcode DEFAULT_STRIP_LAYOUT}. */
  layout?: Partial<StripLayout>;
  /** Ink effects (default {@linkcode NO_STRIP_EFFECTS}). */
  effects?: Partial<StripEffects>;
}

/** Synthesized strips with their per-cell targets. */
export interface Strips {
  /** `[count, 40, 168]` uint8 flattened. */
  images: Uint8Array;
  /** `[count, 21]` cell classes: 0..9 a digit centred in the cell, 10 none. */
  targets: Uint8Array;
  /** Number of strips. */
  count: number;
}

/** mulberry32: a small deterministic PRNG. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer uniform in lo..hi inclusive. */
function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/**
 * A digit's slant and turn: the output pixel at (u, v) px from the box centre reads the source
 * at `[a * u + b * v, c * u + d * v]` before scaling (the inverse of rotation after shear).
 */
interface DigitWarp {
  a: number;
  b: number;
  c: number;
  d: number;
  /** Elastic field: `[ELASTIC_GRID, ELASTIC_GRID, 2]` (dx, dy) in MNIST px, or none. */
  field?: Float32Array;
}

/** Points per side of the elastic field's grid over a 28 x 28 digit. */
const ELASTIC_GRID = 4;

/** A random elastic field of {@linkcode ELASTIC_GRID} x {@linkcode ELASTIC_GRID} (dx, dy), each in [-px, px]. */
function elasticField(px: number, random: () => number): Float32Array {
  const field = new Float32Array(ELASTIC_GRID * ELASTIC_GRID * 2);
  for (let i = 0; i < field.length; i++) field[i] = (2 * random() - 1) * px;
  return field;
}

/** The field's displacement (`axis` 0: dx, 1: dy) at MNIST coordinates (sx, sy), bilinear between its points. */
function fieldAt(field: Float32Array, sx: number, sy: number, axis: number): number {
  const step = (MNIST_SIDE - 1) / (ELASTIC_GRID - 1);
  const gx = Math.min(ELASTIC_GRID - 1, Math.max(0, sx / step));
  const gy = Math.min(ELASTIC_GRID - 1, Math.max(0, sy / step));
  const x0 = Math.min(ELASTIC_GRID - 2, Math.floor(gx));
  const y0 = Math.min(ELASTIC_GRID - 2, Math.floor(gy));
  const wx = gx - x0;
  const wy = gy - y0;
  const f = (y: number, x: number) => field[(y * ELASTIC_GRID + x) * 2 + axis];
  return (f(y0, x0) * (1 - wx) + f(y0, x0 + 1) * wx) * (1 - wy) +
    (f(y0 + 1, x0) * (1 - wx) + f(y0 + 1, x0 + 1) * wx) * wy;
}

/** The inverse map of a rotation by `degrees` after a horizontal shear `shear` (dx = shear * dy). */
function digitWarp(degrees: number, shear: number): DigitWarp {
  const t = (degrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  // forward = R(t) Sh(shear); inverse = Sh(-shear) R(-t) = [[1, -s], [0, 1]] [[cos, sin], [-sin, cos]]
  return { a: cos + shear * sin, b: sin - shear * cos, c: -sin, d: cos };
}

/** Bilinear read of `at` (an MNIST digit's pixels, 0 outside) at (sx, sy), rounded to a byte. */
function bilinear(at: (r: number, c: number) => number, sx: number, sy: number): number {
  const x0 = Math.floor(sx);
  const y0 = Math.floor(sy);
  const wx = sx - x0;
  const wy = sy - y0;
  return Math.round(
    (at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx) * (1 - wy) +
      (at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx) * wy,
  );
}

/**
 * Draws digit `index` of `source`, resized (bilinear) to its box and, given `warp`, turned,
 * slanted and bent about the box centre, into a strip with max.
 */
function pasteDigit(
  strip: Uint8Array,
  stripOffset: number,
  source: DigitSource,
  index: number,
  box: { x: number; y: number; width: number; height: number },
  warp?: DigitWarp,
): void {
  const { x, y, width, height } = box;
  const base = index * MNIST_PIXELS;
  const scaleY = MNIST_SIDE / height;
  const scaleX = MNIST_SIDE / width;
  const half = MNIST_SIDE / 2;
  const at = (r: number, c: number) =>
    r < 0 || r >= MNIST_SIDE || c < 0 || c >= MNIST_SIDE ? 0 : source.images[base + r * 28 + c];
  // A turned digit can reach past its box: a warp draws over a quarter of the box more each way.
  const marginX = warp ? Math.ceil(width / 4) : 0;
  const marginY = warp ? Math.ceil(height / 4) : 0;
  for (let oy = -marginY; oy < height + marginY; oy++) {
    const row = y + oy;
    if (row < 0 || row >= IMAGE_HEIGHT) continue;
    for (let ox = -marginX; ox < width + marginX; ox++) {
      const col = x + ox;
      if (col < 0 || col >= IMAGE_WIDTH) continue;
      // Where the output pixel reads the 28 x 28 digit: scaled, or through the warp about the
      // box centre (u, v px from it).
      let sx = (ox + 0.5) * scaleX - 0.5;
      let sy = (oy + 0.5) * scaleY - 0.5;
      if (warp) {
        const u = ox + 0.5 - width / 2;
        const v = oy + 0.5 - height / 2;
        sx = (warp.a * u + warp.b * v) * scaleX + half - 0.5;
        sy = (warp.c * u + warp.d * v) * scaleY + half - 0.5;
        if (warp.field) {
          const dx = fieldAt(warp.field, sx, sy, 0);
          sy += fieldAt(warp.field, sx, sy, 1);
          sx += dx;
        }
      }
      const value = bilinear(at, sx, sy);
      const p = stripOffset + row * IMAGE_WIDTH + col;
      if (value > strip[p]) strip[p] = value;
    }
  }
}

/** Checks a layout and returns it complete. */
function resolveLayout(overrides: Partial<StripLayout> = {}): StripLayout {
  const layout = { ...DEFAULT_STRIP_LAYOUT, ...overrides };
  const ok = Object.values(layout).every((v) => Number.isInteger(v) && v >= 0) &&
    layout.digitsMin <= layout.digitsMax && layout.boxMin >= 8 && layout.boxMin <= layout.boxMax &&
    layout.centreGapMin > CELL_WIDTH && layout.centreGapMin <= layout.centreGapMax &&
    layout.aspectMinPct >= 10 && layout.aspectMinPct <= layout.aspectMaxPct;
  if (!ok) throw new RangeError(`synthesizeStrips: invalid layout ${JSON.stringify(layout)}`);
  return layout;
}

/**
 * Pastes random digits of `source` into strips (see the module doc) and labels every cell.
 *
 * @param source MNIST digits (use the training set: the test split is made of MNIST's test digits)
 * @param options count, seed and layout overrides
 * @returns the strips and their `[count, 21]` cell targets
 */
export function synthesizeStrips(source: DigitSource, options: StripOptions): Strips {
  const { count, seed } = options;
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`synthesizeStrips: count must be a non-negative integer, got ${count}`);
  }
  if (source.count < 1 || source.images.length !== source.count * MNIST_PIXELS) {
    throw new RangeError(
      `synthesizeStrips: ${source.name ?? "digit source"} must hold count x 28 x 28 bytes`,
    );
  }
  const layout = resolveLayout(options.layout);
  const effects = { ...NO_STRIP_EFFECTS, ...options.effects };
  const rng = mulberry32(seed ^ 0x5eed5);
  // A stream of its own: the same seed places the same digits with or without effects.
  const effectRng = mulberry32(seed ^ 0xeffec7);
  const warpRng = mulberry32(seed ^ 0x5a1a7);
  const images = new Uint8Array(count * IMAGE_SIZE);
  const targets = new Uint8Array(count * NUM_CELLS).fill(NOTHING);
  const centres: number[] = [];
  for (let n = 0; n < count; n++) {
    const digits = randInt(rng, layout.digitsMin, layout.digitsMax);
    // Centres left to right with random gaps, then the whole row shifted to a random place that
    // keeps every centre inside the image.
    centres.length = 0;
    let x = 0;
    for (let k = 0; k < digits; k++) {
      if (k > 0) x += randInt(rng, layout.centreGapMin, layout.centreGapMax);
      centres.push(x);
    }
    let span = centres[digits - 1];
    if (span > IMAGE_WIDTH - 8) {
      // Too wide: squeeze the gaps, keeping them above the minimum where possible.
      const factor = (IMAGE_WIDTH - 8) / span;
      for (let k = 1; k < digits; k++) {
        const gap = Math.max(CELL_WIDTH + 1, Math.floor((centres[k] - centres[k - 1]) * factor));
        centres[k] = centres[k - 1] + gap;
      }
      span = centres[digits - 1];
    }
    const shift = randInt(rng, 4, Math.max(4, IMAGE_WIDTH - 4 - span));
    for (let k = 0; k < digits; k++) {
      const size = randInt(rng, layout.boxMin, layout.boxMax);
      const centre = Math.min(IMAGE_WIDTH - 1, centres[k] + shift);
      const top = randInt(
        rng,
        -layout.verticalOverhang,
        Math.max(-layout.verticalOverhang, IMAGE_HEIGHT - size + layout.verticalOverhang),
      );
      const index = Math.floor(rng() * source.count);
      // Drawn only when the range is open, so square-box strips keep their random stream.
      const aspect = layout.aspectMinPct === layout.aspectMaxPct
        ? layout.aspectMinPct
        : randInt(rng, layout.aspectMinPct, layout.aspectMaxPct);
      const width = Math.max(1, Math.round((size * aspect) / 100));
      // From a stream of their own: the same seed places the same digits, turned or upright.
      const warp = layout.rotationMaxDeg > 0 || layout.shearMaxPct > 0 || layout.elasticPx > 0
        ? digitWarp(
          (2 * warpRng() - 1) * layout.rotationMaxDeg,
          ((2 * warpRng() - 1) * layout.shearMaxPct) / 100,
        )
        : undefined;
      if (warp && layout.elasticPx > 0) warp.field = elasticField(layout.elasticPx, warpRng);
      pasteDigit(images, n * IMAGE_SIZE, source, index, {
        x: Math.round(centre - width / 2),
        y: top,
        width,
        height: size,
      }, warp);
      targets[n * NUM_CELLS + Math.floor(centre / CELL_WIDTH)] = source.labels[index];
    }
    if (effects.probability > 0) {
      const drawn = drawStripEffects(effects, effectRng);
      const strip = images.subarray(n * IMAGE_SIZE, (n + 1) * IMAGE_SIZE);
      applyEffects(strip, drawn.effects, drawn.seed);
    }
  }
  return { images, targets, count };
}

/** Options of {@linkcode StripLoader}. */
export interface StripLoaderOptions {
  /** Strips per epoch. */
  size: number;
  /** Strips per batch. */
  batchSize: number;
  /** Base seed; epoch `e` uses fresh strips drawn from (seed, e). */
  seed: number;
  /** Augmentation overrides. */
  layout?: Partial<StripLayout>;
  /** Ink effects (default none). */
  effects?: Partial<StripEffects>;
  /** Name used in messages (default `mnist-strips`). */
  name?: string;
}

/**
 * A {@linkcode BatchSource} of freshly synthesized strips every epoch (endless augmentation).
 * Batches carry `x` `[b, 40, 168, 1]` in [0, 1] and, as `y`, the cell targets flattened to
 * `[b * 21]` (float32 class indices), for SumNet's per-cell pretraining loss.
 */
export class StripLoader implements BatchSource {
  readonly name: string;
  readonly size: number;
  readonly numBatches: number;
  readonly #source: DigitSource;
  readonly #options: StripLoaderOptions;

  /**
   * @param source MNIST training digits
   * @param options strips per epoch, batch size, seed, layout
   */
  constructor(source: DigitSource, options: StripLoaderOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`StripLoader: size must be a positive integer, got ${options.size}`);
    }
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
      throw new RangeError(
        `StripLoader: batch size must be a positive integer, got ${options.batchSize}`,
      );
    }
    this.name = options.name ?? "mnist-strips";
    this.size = options.size;
    this.numBatches = Math.ceil(options.size / options.batchSize);
    this.#source = source;
    this.#options = options;
  }

  /** Yields the batches of one epoch; the caller disposes `x` and `y`. */
  *batches(options: { epoch?: number } = {}): Generator<Batch> {
    const epoch = options.epoch ?? 0;
    const { batchSize, seed, layout, effects } = this.#options;
    for (let i = 0; i < this.numBatches; i++) {
      const size = Math.min(batchSize, this.size - i * batchSize);
      const strips = synthesizeStrips(this.#source, {
        count: size,
        seed: (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b) ^ i) >>> 0,
        layout,
        effects,
      });
      const pixels = new Float32Array(strips.images.length);
      for (let p = 0; p < pixels.length; p++) pixels[p] = BYTE_TO_UNIT[strips.images[p]];
      const x = tf.tensor4d(pixels, [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1]);
      const y = tf.tensor1d(Float32Array.from(strips.targets));
      yield { x, y, index: i };
    }
  }
}

/**
 * MNIST's 60,000 training digits (the only digits SumNet's pretraining uses: the held-out test
 * split is made of MNIST's test digits).
 *
 * @returns the digits as a {@linkcode DigitSource}
 */
export async function loadMnistTrainDigits(): Promise<DigitSource> {
  return await loadMnist("train");
}
