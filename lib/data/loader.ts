/**
 * The study's data loading (`get_loaders`): the three course files concatenated (30,000 images),
 * reordered by NumPy's legacy permutation for the seed, the first `int(30000 * trainFraction)`
 * for training and the rest for validation, batches in order.
 *
 * Memory: all images stay in ONE uint8 buffer (`[N, 40, 168]`, 6,720 bytes each); each split is
 * an Int32Array of indices into it. A batch is gathered and scaled to float32 in [0, 1] only
 * when it is used; no float copy of the set is ever held.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  IMAGE_HEIGHT,
  IMAGE_SIZE,
  IMAGE_WIDTH,
  NUM_SUMS,
  TRAIN_FRACTION,
} from "../constants.ts";
import { COURSE_IMAGE_FILES, COURSE_LABEL_FILES, ensureDataset, TEST_FILES } from "./generate.ts";
import { asFloat32, type NdArray, type NpyFile, openNpy, readNpy } from "../io/npy.ts";
import { legacyPermutation, MT19937 } from "./numpy_random.ts";
import { type BatchSource } from "./batch.ts";

/** The study's default seed for the split. */
export const DEFAULT_SPLIT_SEED = 42;
/** `i / 255` as float32 for every byte value (the same values as float32 division). */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, i) => i / 255);

/** Images and labels in memory: `images` is `[count, 40, 168]` uint8 flattened. */
export interface ImageSet {
  /** `[count, 40, 168]` uint8, row-major. */
  images: Uint8Array;
  /** `[count]` float32 sums. */
  labels: Float32Array;
  /** Number of images. */
  count: number;
}

/** One batch as tensors. The consumer must dispose `x` and `y` (e.g. `tf.dispose([x, y])`). */
export interface LoaderBatch {
  /** `[b, 40, 168, 1]` float32 in [0, 1]. */
  x: tf.Tensor4D;
  /** `[b]` float32 sums. */
  y: tf.Tensor1D;
  /** Index of the batch within the epoch, from 0. */
  index: number;
}

/** One batch as plain arrays. */
export interface BatchArrays {
  /** `[size, 40, 168]` float32 in [0, 1] (add the channel axis as needed). */
  images: Float32Array;
  /** `[size]` float32 sums. */
  labels: Float32Array;
  /** Images in this batch (the last batch may be partial). */
  size: number;
}

/** Options of the {@linkcode Loader} constructor. */
export interface LoaderOptions {
  /** Images per batch; the last batch may be smaller. */
  batchSize: number;
  /** Reorder the batches' images every epoch (the study never does); default false. */
  shuffleEachEpoch?: boolean;
  /** Seed of the per-epoch order (with the epoch number); default 42. */
  seed?: number;
}

/**
 * Batches over a subset of an {@linkcode ImageSet}, in a fixed order (the study's behaviour) or
 * in a per-epoch order derived from (seed, epoch) when `shuffleEachEpoch` is set.
 *
 * Tensors from {@linkcode Loader.batches} belong to the caller, who must dispose them.
 */
export class Loader {
  /** Name used in messages, e.g. `train`. */
  readonly name: string;
  /** Number of images. */
  readonly size: number;
  /** Images per batch. */
  readonly batchSize: number;
  /** `ceil(size / batchSize)`. */
  readonly numBatches: number;
  readonly #set: ImageSet;
  readonly #indices: Int32Array;
  readonly #shuffleEachEpoch: boolean;
  readonly #seed: number;

  /**
   * @param name name used in messages
   * @param set the images and labels
   * @param indices which images, in order (positions into `set`)
   * @param options batch size and per-epoch shuffling
   */
  constructor(name: string, set: ImageSet, indices: Int32Array, options: LoaderOptions) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(
        `Loader ${name}: batch size must be a positive integer, got ${batchSize}`,
      );
    }
    for (let i = 0; i < indices.length; i++) {
      if (indices[i] < 0 || indices[i] >= set.count) {
        throw new RangeError(`Loader ${name}: index ${indices[i]} outside 0..${set.count - 1}`);
      }
    }
    this.name = name;
    this.size = indices.length;
    this.batchSize = batchSize;
    this.numBatches = Math.ceil(indices.length / batchSize);
    this.#set = set;
    this.#indices = indices;
    this.#shuffleEachEpoch = options.shuffleEachEpoch ?? false;
    this.#seed = options.seed ?? DEFAULT_SPLIT_SEED;
  }

  /** The image indices (into the concatenated set) in loader order; a copy. */
  indices(): Int32Array {
    return this.#indices.slice();
  }

  /** The labels in loader order (epoch order without shuffling); a new array. */
  labels(): Float32Array {
    const out = new Float32Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.#set.labels[this.#indices[i]];
    return out;
  }

  /** Image `i` (loader order) as a `[40, 168]` uint8 view into the shared buffer. */
  imageAt(i: number): Uint8Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) {
      throw new RangeError(`Loader ${this.name}: image ${i} outside 0..${this.size - 1}`);
    }
    const start = this.#indices[i] * IMAGE_SIZE;
    return this.#set.images.subarray(start, start + IMAGE_SIZE);
  }

  /**
   * The order of positions for an epoch: identity unless `shuffleEachEpoch`, then a permutation
   * drawn with MT19937 from (seed, epoch).
   */
  #epochOrder(epoch: number): Int32Array | undefined {
    if (!this.#shuffleEachEpoch) return undefined;
    const mt = new MT19937();
    mt.seedByArray([this.#seed >>> 0, epoch >>> 0, 0x6c6f6164]);
    const order = new Int32Array(this.size);
    for (let i = 0; i < this.size; i++) order[i] = i;
    mt.shuffle(order);
    return order;
  }

  /** Gathers batch `i` through `order` (positions) into float arrays. */
  #gather(i: number, order: Int32Array | undefined): BatchArrays {
    if (!Number.isInteger(i) || i < 0 || i >= this.numBatches) {
      throw new RangeError(`Loader ${this.name}: batch ${i} outside 0..${this.numBatches - 1}`);
    }
    const start = i * this.batchSize;
    const size = Math.min(this.batchSize, this.size - start);
    const images = new Float32Array(size * IMAGE_SIZE);
    const labels = new Float32Array(size);
    const source = this.#set.images;
    for (let b = 0; b < size; b++) {
      const position = order ? order[start + b] : start + b;
      const index = this.#indices[position];
      labels[b] = this.#set.labels[index];
      const from = index * IMAGE_SIZE;
      const to = b * IMAGE_SIZE;
      for (let p = 0; p < IMAGE_SIZE; p++) images[to + p] = BYTE_TO_UNIT[source[from + p]];
    }
    return { images, labels, size };
  }

  /**
   * Batch `i` as float arrays (images scaled to [0, 1]).
   *
   * @param i batch index, 0..numBatches-1
   * @param options `epoch` selects the order when `shuffleEachEpoch` is set
   */
  batchArrays(i: number, options: { epoch?: number } = {}): BatchArrays {
    return this.#gather(i, this.#epochOrder(options.epoch ?? 0));
  }

  /**
   * Yields every batch of an epoch in order as tensors: `x` `[b, 40, 168, 1]` float32 in
   * [0, 1] and `y` `[b]` float32 sums. The caller owns and must dispose both tensors.
   *
   * @param options `epoch` selects the order when `shuffleEachEpoch` is set (default 0)
   */
  *batches(options: { epoch?: number } = {}): Generator<LoaderBatch> {
    const order = this.#epochOrder(options.epoch ?? 0);
    for (let i = 0; i < this.numBatches; i++) {
      const { images, labels, size } = this.#gather(i, order);
      const x = tf.tensor4d(images, [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1], "float32");
      const y = tf.tensor1d(labels, "float32");
      yield { x, y, index: i };
    }
  }
}

/** Describes an array's dtype and shape for messages, e.g. `float32 [10000, 40, 168]`. */
function describe(array: NdArray): string {
  return `${array.dtype} [${array.shape.join(", ")}]`;
}

/** Checks that an images file holds uint8 `[N, 40, 168]`; returns N. */
function imageCount(images: { dtype: string; shape: readonly number[] }, path: string): number {
  if (
    images.dtype !== "uint8" || images.shape.length !== 3 ||
    images.shape[1] !== IMAGE_HEIGHT || images.shape[2] !== IMAGE_WIDTH
  ) {
    throw new Error(
      `Cannot read ${path}: expected uint8 images of shape [N, ${IMAGE_HEIGHT}, ` +
        `${IMAGE_WIDTH}], got ${images.dtype} [${images.shape.join(", ")}]`,
    );
  }
  return images.shape[0];
}

/** Reads the labels of `count` images (of `imagesPath`): sums 0..36 as float32. */
async function readLabels(
  labelsPath: string,
  count: number,
  imagesPath: string,
): Promise<Float32Array> {
  const labels = await readNpy(labelsPath);
  const flat = labels.shape.length === 1 ||
    (labels.shape.length === 2 && labels.shape[1] === 1);
  if (!flat) {
    throw new Error(
      `Cannot read ${labelsPath}: expected labels of shape [N], got ${describe(labels)}`,
    );
  }
  if (labels.shape[0] !== count) {
    throw new Error(
      `Cannot read ${labelsPath}: ${labels.shape[0]} labels for ${count} images in ${imagesPath}`,
    );
  }
  const values = asFloat32(labels);
  for (let i = 0; i < values.length; i++) {
    // A sum of four digits: an integer 0..36 (int64 labels are checked before float rounding).
    const value = labels.data instanceof BigInt64Array ? Number(labels.data[i]) : values[i];
    if (!Number.isInteger(value) || value < 0 || value >= NUM_SUMS) {
      throw new Error(
        `Cannot read ${labelsPath}: label ${i} is ${value}, not a sum of four digits ` +
          `(an integer 0..${NUM_SUMS - 1})`,
      );
    }
  }
  return values;
}

/** Reads and validates one image file and its label file. */
async function readPair(
  imagesPath: string,
  labelsPath: string,
): Promise<{ images: Uint8Array; labels: Float32Array; count: number }> {
  const images = await readNpy(imagesPath);
  const count = imageCount(images, imagesPath);
  const labels = await readLabels(labelsPath, count, imagesPath);
  return { images: images.data as Uint8Array, labels, count };
}

/**
 * Reads image/label file pairs and concatenates them into one {@linkcode ImageSet}.
 *
 * @param pairs `[imagesPath, labelsPath]` in concatenation order
 * @returns one uint8 buffer of all images and their float32 labels
 */
export async function readImageSet(pairs: readonly [string, string][]): Promise<ImageSet> {
  const parts = [];
  for (const [imagesPath, labelsPath] of pairs) parts.push(await readPair(imagesPath, labelsPath));
  if (parts.length === 1) return parts[0];
  const count = parts.reduce((n, p) => n + p.count, 0);
  const images = new Uint8Array(count * IMAGE_SIZE);
  const labels = new Float32Array(count);
  let at = 0;
  for (const part of parts) {
    images.set(part.images, at * IMAGE_SIZE);
    labels.set(part.labels, at);
    at += part.count;
  }
  return { images, labels, count };
}

/** Options of {@linkcode getLoaders}. */
export interface GetLoadersOptions {
  /** Seed of NumPy's legacy permutation (the study's `seed`); default 42. */
  seed?: number;
  /** Folder with data0/1/2.npy and lab0/1/2.npy; default `data` (generated when absent). */
  dataDir?: string;
  /** Keep only the first `limit` training images and `max(batchSize, ceil(limit / 4))` validation ones. */
  limit?: number;
  /** Return one loader over all images (in permuted order) instead of the split. */
  all?: boolean;
  /** Reorder images every epoch from (seed, epoch); the study does not. Default false. */
  shuffleEachEpoch?: boolean;
  /** Progress lines when the data set has to be generated; default console.log. */
  log?: (line: string) => void;
}

/** The study's two loaders. */
export interface SplitLoaders {
  /** The first `int(N * trainFraction)` images of the permutation. */
  train: Loader;
  /** The rest. */
  val: Loader;
}

/**
 * The study's `get_loaders`: concatenates `data0/1/2.npy` (and `lab0/1/2.npy`), permutes them with
 * `np.random.seed(seed); np.random.shuffle(arange(N))`, and splits at `int(N * trainFraction)`.
 * Generates the data set from MNIST first when the files are absent ({@linkcode ensureDataset}).
 *
 * @param trainFraction fraction for training, 0..1 (default 0.8)
 * @param batchSize images per batch (default 64)
 * @param options seed (default 42), data folder, limit, `all`, per-epoch shuffling
 * @returns `{train, val}`, or `{all}` when `options.all`
 */
export async function getLoaders(
  trainFraction?: number,
  batchSize?: number,
  options?: GetLoadersOptions & { all?: false },
): Promise<SplitLoaders>;
export async function getLoaders(
  trainFraction: number | undefined,
  batchSize: number | undefined,
  options: GetLoadersOptions & { all: true },
): Promise<{ all: Loader }>;
export async function getLoaders(
  trainFraction: number = TRAIN_FRACTION,
  batchSize: number = BATCH_SIZE,
  options: GetLoadersOptions = {},
): Promise<SplitLoaders | { all: Loader }> {
  if (!(trainFraction >= 0 && trainFraction <= 1)) {
    throw new RangeError(`getLoaders: trainFraction must be in 0..1, got ${trainFraction}`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`getLoaders: batch size must be a positive integer, got ${batchSize}`);
  }
  const limit = options.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new RangeError(`getLoaders: limit must be a positive integer, got ${limit}`);
  }
  const seed = options.seed ?? DEFAULT_SPLIT_SEED;
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  await ensureDataset(dataDir, { log: options.log ?? console.log });
  const set = await readImageSet(
    COURSE_IMAGE_FILES.map((f, i) => [join(dataDir, f), join(dataDir, COURSE_LABEL_FILES[i])]),
  );
  const loaderOptions = { batchSize, shuffleEachEpoch: options.shuffleEachEpoch, seed };
  if (options.all) {
    return { all: new Loader("all", set, legacyPermutation(set.count, seed), loaderOptions) };
  }
  let { train: trainIndices, val: valIndices } = splitIndices(set.count, trainFraction, seed);
  if (limit !== undefined) {
    trainIndices = trainIndices.subarray(0, limit);
    valIndices = valIndices.subarray(0, Math.max(batchSize, Math.ceil(limit / 4)));
  }
  return {
    train: new Loader("train", set, trainIndices, loaderOptions),
    val: new Loader("val", set, valIndices, loaderOptions),
  };
}

/**
 * Batches over a pair of course-format files read from disk as they are used: the images file
 * stays on disk and each batch's rows are read when the batch is made, so memory stays bounded
 * (a batch, not the file) for files of any size. Made by {@linkcode loadNpyPairLoader}; call
 * {@linkcode NpyPairLoader.close} when done.
 */
export class NpyPairLoader implements BatchSource {
  /** The images file, used in messages. */
  readonly name: string;
  /** Number of images. */
  readonly size: number;
  /** Images per batch. */
  readonly batchSize: number;
  /** `ceil(size / batchSize)`. */
  readonly numBatches: number;
  readonly #file: NpyFile;
  readonly #labels: Float32Array;

  /**
   * @param file the open images file (uint8 `[N, 40, 168]`)
   * @param labels its N sums
   * @param batchSize images per batch
   */
  constructor(file: NpyFile, labels: Float32Array, batchSize: number) {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(
        `NpyPairLoader: batch size must be a positive integer, got ${batchSize}`,
      );
    }
    this.name = file.path;
    this.size = labels.length;
    this.batchSize = batchSize;
    this.numBatches = Math.ceil(this.size / batchSize);
    this.#file = file;
    this.#labels = labels;
  }

  /** The labels in file order; a copy. */
  labels(): Float32Array {
    return this.#labels.slice();
  }

  /**
   * Yields every batch in file order: `x` `[b, 40, 168, 1]` float32 in [0, 1] and `y` `[b]`
   * float32 sums, the images read from disk for this batch. The caller disposes both.
   */
  *batches(): Generator<LoaderBatch> {
    for (let i = 0; i < this.numBatches; i++) {
      const start = i * this.batchSize;
      const size = Math.min(this.batchSize, this.size - start);
      const pixels = this.#file.readRows(start, size) as Uint8Array; // [size, 40, 168]
      const images = new Float32Array(pixels.length);
      for (let p = 0; p < pixels.length; p++) images[p] = BYTE_TO_UNIT[pixels[p]];
      const x = tf.tensor4d(images, [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1], "float32");
      const y = tf.tensor1d(this.#labels.subarray(start, start + size), "float32");
      yield { x, y, index: i };
    }
  }

  /** Close the images file. */
  close(): void {
    this.#file.close();
  }
}

/**
 * A loader over any pair of course-format files (images `[N, 40, 168]` uint8, labels `[N]` of
 * any supported dtype, sums 0..36), in file order. Both files are checked first; the images are
 * then read a batch at a time (see {@linkcode NpyPairLoader}).
 *
 * @param imagesPath the images `.npy`
 * @param labelsPath the labels `.npy`
 * @param batchSize images per batch (default 64)
 * @returns a loader named after the images file; close it when done
 */
export async function loadNpyPairLoader(
  imagesPath: string,
  labelsPath: string,
  batchSize: number = BATCH_SIZE,
): Promise<NpyPairLoader> {
  const file = await openNpy(imagesPath);
  try {
    const count = imageCount(file, imagesPath);
    const labels = await readLabels(labelsPath, count, imagesPath);
    return new NpyPairLoader(file, labels, batchSize);
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * The study's train/validation split of `count` composites: a NumPy-compatible permutation of
 * `seed`, its first `trunc(count * trainFraction)` entries for training (Python's `int()`), the
 * rest for validation. {@linkcode getLoaders} splits this way.
 *
 * @returns image indices into the concatenated course files
 */
export function splitIndices(
  count: number,
  trainFraction: number,
  seed: number,
): { train: Int32Array; val: Int32Array } {
  const permutation = legacyPermutation(count, seed);
  const trainCount = Math.trunc(count * trainFraction);
  return { train: permutation.subarray(0, trainCount), val: permutation.subarray(trainCount) };
}

/**
 * The held-out test set `test_data.npy` / `test_lab.npy` (generated from MNIST's test digits
 * when absent), in file order.
 *
 * @param batchSize images per batch (default 64)
 * @param options `dataDir` (default `data`), `log` (lines while generating; default console.log)
 * @returns a loader named `test`
 */
export async function loadTestLoader(
  batchSize: number = BATCH_SIZE,
  options: { dataDir?: string; log?: (line: string) => void; limit?: number } = {},
): Promise<Loader> {
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  await ensureDataset(dataDir, { log: options.log ?? console.log });
  const set = await readImageSet([[
    join(dataDir, TEST_FILES.images),
    join(dataDir, TEST_FILES.labels),
  ]]);
  const count = Math.min(set.count, options.limit ?? set.count);
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  return new Loader("test", set, order, { batchSize });
}
