/**
 * SumNet: a model that reads the four digits and adds them up.
 *
 * A small fully convolutional network slides over the 40 x 168 image and, for each of the 21
 * columns of 8 px ("cells"), says what is centred there: one of the digits 0..9 or nothing
 * (`[b, 1, 21, 11]` logits). Nothing else in the model looks at positions: the
 * {@linkcode SumCombine} layer turns the 21 per-cell distributions into the distribution of the
 * sum of the digits, given that exactly four digits are present (a product of polynomials,
 * evaluated as a short dynamic programme), and outputs its log: 37 log-probabilities. Softmax
 * cross entropy on them is the negative log-likelihood of the true sum, so the study's train loop,
 * accuracy and argmax prediction apply unchanged.
 *
 * The shipped recipe ({@linkcode SUMNET_RECIPE}) first pretrains the cell classifier on strips
 * pasted from MNIST's own labelled training digits (`lib/mnist.ts`), then trains the whole model on
 * the composites' sums.
 *
 * The inference core (the custom layers and the digit read-out, no file I/O, so it also runs in a
 * browser) lives in `lib/sumnet_core.ts`; this module re-exports it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { IMAGE_HEIGHT, IMAGE_WIDTH, NUM_DIGITS } from "../../constants.ts";
import {
  CELL_WIDTH,
  loadMnistTrainDigits,
  NOTHING,
  NUM_CELL_CLASSES,
  StripLoader,
} from "../../data/strips.ts";
import type { BuildOptions, PrepareContext, TrainingRecipe } from "../registry.ts";
import {
  CELL_LOGITS_LAYER,
  MeanOverViews,
  registerLayers,
  SumCombine,
  TestViews,
} from "./core.ts";
import { type EpochRecord, evaluateAccuracy, firstImages, trainModel } from "../../training/train.ts";

export * from "./core.ts";

registerLayers();

/** Shape of SumNet's convolutional trunk. */
export interface SumNetWidths {
  /** Channels of the three 3 x 3 stages. */
  stages: [number, number, number];
  /** Channels of the cell feature layer (a 5 x 3 convolution over the last stage). */
  features: number;
  /** 3 x 3 convolutions in the last stage (at 10 x 42, before its pooling): 1 or 2. */
  lastStageConvs: number;
  /**
   * 3 x 3 convolutions (as wide as the last stage) after its pooling, at 5 x 21, before the cell
   * layer: depth and a wider view for a quarter of the cost of one at 10 x 42.
   */
  cellConvs: number;
  /**
   * Start with a 2 x 2 space-to-depth step (`[40, 168, 1]` -> `[20, 84, 4]`, no pooling after the
   * first stage) instead of a first stage at full resolution.
   */
  spaceToDepth: boolean;
}

/** The shipped widths (chosen on the validation split; see docs/BEYOND.md). */
export const DEFAULT_WIDTHS: Readonly<SumNetWidths> = Object.freeze({
  stages: [16, 32, 96] as [number, number, number],
  features: 192,
  lastStageConvs: 1,
  cellConvs: 1,
  spaceToDepth: true,
});

/**
 * The shipped test-time views: the image, and the image rolled by a quarter and by half a cell
 * (2 and 4 px) each way, so each digit is read with its centre at several places relative to the
 * cell borders (chosen on the validation split; see docs/BEYOND.md).
 */
export const DEFAULT_TEST_SHIFTS: readonly number[] = Object.freeze([0, 2, -2, 4, -4]);

/** Whether the 3 x 3 stages use batch normalisation. */
const DEFAULT_BATCH_NORM = false;

/** He-uniform initialiser (ReLU layers). */
function heInit(): ReturnType<typeof tf.initializers.heUniform> {
  return tf.initializers.heUniform({});
}

/**
 * Builds an untrained SumNet: `[b, 40, 168, 1]` -> 37 log-probabilities of the sum.
 *
 * @param options input size (must be 40 x 168) and, optionally, other widths
 * @returns the model; its layer {@linkcode CELL_LOGITS_LAYER} gives the per-cell logits
 */
export function buildSumNet(
  options: BuildOptions & {
    widths?: Partial<SumNetWidths>;
    batchNorm?: boolean;
    /** Test-time views (default {@linkcode DEFAULT_TEST_SHIFTS}; `[0]` for none). */
    testShifts?: readonly number[];
  } = {},
): tf.LayersModel {
  const h = options.inputHeight ?? IMAGE_HEIGHT;
  const w = options.inputWidth ?? IMAGE_WIDTH;
  if (h !== IMAGE_HEIGHT || w !== IMAGE_WIDTH) {
    throw new Error(`SumNet needs ${IMAGE_HEIGHT} x ${IMAGE_WIDTH} inputs, got ${h} x ${w}`);
  }
  const widths = { ...DEFAULT_WIDTHS, ...options.widths };
  const input = tf.input({ shape: [h, w, 1], name: "image" }); // [b, 40, 168, 1]
  const shifts = [...(options.testShifts ?? DEFAULT_TEST_SHIFTS)];
  // [views * b, 40, 168, 1] at inference, [b, 40, 168, 1] in training
  let x = new TestViews({ shifts, name: "test_views" }).apply(input) as tf.SymbolicTensor;
  const batchNorm = options.batchNorm ?? DEFAULT_BATCH_NORM;
  const last = widths.stages.length - 1;
  if (widths.spaceToDepth) {
    x = tf.layers.reshape({ targetShape: [h / 2, 2, w / 2, 2], name: "s2d_split" })
      .apply(x) as tf.SymbolicTensor; // [b, 20, 2, 84, 2]
    x = tf.layers.permute({ dims: [1, 3, 2, 4], name: "s2d_permute" })
      .apply(x) as tf.SymbolicTensor; // [b, 20, 84, 2, 2]
    x = tf.layers.reshape({ targetShape: [h / 2, w / 2, 4], name: "s2d" })
      .apply(x) as tf.SymbolicTensor; // [b, 20, 84, 4]
  }
  widths.stages.forEach((filters, i) => {
    const convs = i === last ? widths.lastStageConvs : 1;
    for (let k = 0; k < convs; k++) {
      const suffix = k === 0 ? "" : String.fromCharCode(97 + k); // conv3, conv3b
      x = tf.layers.conv2d({
        filters,
        kernelSize: 3,
        padding: "same",
        activation: batchNorm ? "linear" : "relu",
        useBias: !batchNorm,
        kernelInitializer: heInit(),
        name: `conv${i + 1}${suffix}`,
      }).apply(x) as tf.SymbolicTensor;
      if (batchNorm) {
        x = tf.layers.batchNormalization({ axis: -1, momentum: 0.9, name: `bn${i + 1}${suffix}` })
          .apply(x) as tf.SymbolicTensor;
        x = tf.layers.reLU({ name: `relu${i + 1}${suffix}` }).apply(x) as tf.SymbolicTensor;
      }
    }
    if (i === 0 && widths.spaceToDepth) return;
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `pool${i + 1}` })
      .apply(x) as tf.SymbolicTensor;
  }); // [b, 5, 21, 96]
  for (let k = 0; k < widths.cellConvs; k++) {
    x = tf.layers.conv2d({
      filters: widths.stages[last],
      kernelSize: 3,
      padding: "same",
      activation: "relu",
      kernelInitializer: heInit(),
      name: `conv_cells${k + 1}`,
    }).apply(x) as tf.SymbolicTensor; // [b, 5, 21, 96]
  }
  x = tf.layers.zeroPadding2d({ padding: [[0, 0], [1, 1]], name: "pad_cells" })
    .apply(x) as tf.SymbolicTensor; // [b, 5, 23, 96]
  x = tf.layers.conv2d({
    filters: widths.features,
    kernelSize: [IMAGE_HEIGHT / CELL_WIDTH, 3],
    padding: "valid",
    activation: "relu",
    kernelInitializer: heInit(),
    name: "cell_features",
  }).apply(x) as tf.SymbolicTensor; // [b, 1, 21, 192]
  const logits = tf.layers.conv2d({
    filters: NUM_CELL_CLASSES,
    kernelSize: 1,
    name: CELL_LOGITS_LAYER,
  }).apply(x) as tf.SymbolicTensor; // [b, 1, 21, 11]
  const sums = new SumCombine({ count: NUM_DIGITS, name: "sum_distribution" })
    .apply(logits) as tf.SymbolicTensor; // [views * b, 37]
  const output = new MeanOverViews({ shifts, name: "mean_over_views" })
    .apply(sums) as tf.SymbolicTensor; // [b, 37]
  return tf.model({ inputs: input, outputs: output, name: "sumnet" });
}

/** The sub-model from the image to the per-cell logits `[b, 1, 21, 11]` (shares weights). */
export function cellModel(model: tf.LayersModel): tf.LayersModel {
  return tf.model({ inputs: model.inputs, outputs: model.getLayer(CELL_LOGITS_LAYER).output });
}

/**
 * Per-cell softmax cross entropy, digit cells weighted `digitWeight` times a "nothing" cell (they
 * are about one in five); `labels` are the cell classes flattened to `[b * 21]`.
 */
export function cellLoss(
  output: tf.Tensor,
  labels: tf.Tensor1D,
  options: { digitWeight?: number } = {},
): tf.Scalar {
  return tf.tidy(() => {
    const logits = output.reshape([-1, NUM_CELL_CLASSES]) as tf.Tensor2D;
    const classes = labels.toInt();
    const oneHot = tf.oneHot(classes, NUM_CELL_CLASSES);
    const weights = tf.where(
      classes.equal(NOTHING),
      tf.onesLike(labels),
      tf.fill(labels.shape, options.digitWeight ?? 1),
    );
    const perCell = tf.losses.softmaxCrossEntropy(
      oneHot,
      logits,
      undefined,
      undefined,
      tf.Reduction.NONE,
    );
    return perCell.mul(weights).sum().div(weights.sum()) as tf.Scalar;
  });
}

/**
 * Warm-up then cosine decay: the rate at `step` of `total`, rising linearly to `peak` over the
 * first `warmup` fraction and falling to `floor * peak` at the end.
 */
export function cosineSchedule(
  peak: number,
  step: number,
  total: number,
  options: { warmup?: number; floor?: number } = {},
): number {
  const warmup = options.warmup ?? 0.03;
  const floor = options.floor ?? 0.03;
  const t = total > 0 ? Math.min(1, step / total) : 1;
  if (t < warmup) return peak * (t + 1 / Math.max(1, total)) / warmup;
  const progress = (t - warmup) / (1 - warmup);
  return peak * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** Settings of SumNet's MNIST pretraining stage. */
export interface PretrainOptions {
  /** Strips per epoch (fresh ones every epoch). */
  strips: number;
  /** Epochs. */
  epochs: number;
  /** Peak Adam learning rate (warm-up then cosine decay). */
  learningRate: number;
  /** Weight of a digit cell against a "nothing" cell in the loss. */
  digitWeight: number;
  /** Strips per batch. */
  batchSize: number;
  /** Validation images scored after each pretraining epoch (the first ones of the split). */
  validationImages: number;
}

/** The shipped pretraining stage (measured on the validation split; see docs/BEYOND.md). */
export const PRETRAIN_DEFAULTS: Readonly<PretrainOptions> = Object.freeze({
  strips: 9600,
  epochs: 18,
  learningRate: 1e-2,
  digitWeight: 12,
  batchSize: 64,
  validationImages: 512,
});

/**
 * Stage 1 of the recipe: trains SumNet's cell classifier on strips of MNIST training digits
 * ({@linkcode StripLoader}) with the per-cell loss, through the study's train loop. Each epoch's
 * line gives the whole model's sum accuracy on `context.val` (what it scores before seeing a
 * composite's sum).
 *
 * @param model a SumNet (its weights are trained in place)
 * @param context seed, optional image cap (`limit` shrinks the stage for quick runs), validation
 *   loader and log
 * @returns the stage's epoch records
 */
export async function pretrainSumNet(
  model: tf.LayersModel,
  context: PrepareContext & { options?: Partial<PretrainOptions> },
): Promise<EpochRecord[]> {
  const options = { ...PRETRAIN_DEFAULTS, ...context.options };
  const strips = context.limit ? Math.min(options.strips, context.limit) : options.strips;
  const log = context.log;
  const digits = await loadMnistTrainDigits();
  const loader = new StripLoader(digits, {
    size: strips,
    batchSize: options.batchSize,
    seed: context.seed,
  });
  const total = options.epochs * loader.numBatches;
  log(
    `Stage 1: pretraining the cell classifier on ${options.epochs} x ${strips} strips of ` +
      `MNIST training digits`,
  );
  const result = await trainModel(cellModel(model), { train: loader, val: context.val }, {
    task: "classification",
    epochs: options.epochs,
    loss: (output, labels) => cellLoss(output, labels, { digitWeight: options.digitWeight }),
    learningRateAt: (epoch, batch) =>
      cosineSchedule(options.learningRate, (epoch - 1) * loader.numBatches + batch, total),
    validate: async () =>
      (await evaluateAccuracy(
        model,
        firstImages(context.val, options.validationImages),
        "classification",
      ))
        .batchMeanAccuracy,
    log: (line) => log(`  pretraining ${line}`),
    onBatchEnd: context.onBatchEnd,
    stopAfterBatch: context.stopAfterBatch,
  });
  if (result.stopped) return result.history;
  log("Stage 2: training the whole model on the composites' sums");
  return result.history;
}

/**
 * Data augmentation that keeps every sum: each image is rolled cyclically, horizontally at a
 * random empty column and vertically at a random empty row. A cut through empty pixels splits no
 * digit, so the same four digits reappear in a new arrangement (a shift, or the right part moved
 * in front of the left part). Uses `Math.random` (seeded by `seedEverything`).
 *
 * @param x `[b, 40, 168, 1]` images (background exactly 0)
 * @returns a new tensor of the same shape
 */
export async function rollAtGaps(x: tf.Tensor4D): Promise<tf.Tensor4D> {
  const [b, h, w] = x.shape;
  const data = await x.data();
  const out = new Float32Array(data.length);
  const colInk = new Float32Array(w);
  const rowInk = new Float32Array(h);
  const pick = (ink: Float32Array) => {
    const empty: number[] = [];
    ink.forEach((v, i) => {
      if (v === 0) empty.push(i);
    });
    return empty.length === 0 ? 0 : empty[Math.floor(Math.random() * empty.length)];
  };
  for (let i = 0; i < b; i++) {
    const base = i * h * w;
    colInk.fill(0);
    rowInk.fill(0);
    for (let y = 0; y < h; y++) {
      for (let c = 0; c < w; c++) {
        const v = data[base + y * w + c];
        colInk[c] += v;
        rowInk[y] += v;
      }
    }
    const dx = pick(colInk);
    const dy = pick(rowInk);
    for (let y = 0; y < h; y++) {
      const from = base + ((y + dy) % h) * w;
      const to = base + y * w;
      out.set(data.subarray(from + dx, from + w), to);
      out.set(data.subarray(from, from + dx), to + w - dx);
    }
  }
  return tf.tensor4d(out, x.shape);
}

/**
 * SumNet's recipe for `runExperiment`: MNIST pretraining ({@linkcode PRETRAIN_DEFAULTS}), then a
 * short, gentle cosine run on the sums. Per-epoch validation uses the first 2,048 validation images
 * and the final training accuracy the first 6,000 training images (inference reads each image five
 * times); the final validation and test figures cover their whole splits.
 */
export const SUMNET_RECIPE: TrainingRecipe = {
  epochs: 3,
  learningRate: 1e-3,
  shuffleEachEpoch: true,
  augment: rollAtGaps,
  validationImages: 2048,
  trainAccuracyImages: 6000,
  schedule: ({ epoch, batch, numBatches, epochs, learningRate }) =>
    cosineSchedule(learningRate, (epoch - 1) * numBatches + batch, epochs * numBatches),
  prepare: async (model, context) => {
    await pretrainSumNet(model, context);
  },
};

/**
 * The sums-only variant (`sumnet-scratch`): the same network, schedule shape and augmentation
 * without MNIST, trained on the composites' sums alone for about as many images as the shipped
 * recipe's two stages together (18 x 9,600 strips + 3 x 24,000 composites = 10.2 x 24,000), at
 * the learning rate of a model trained from scratch.
 */
export const SUMNET_SCRATCH_RECIPE: TrainingRecipe = {
  epochs: 10,
  learningRate: 2e-3,
  shuffleEachEpoch: true,
  augment: rollAtGaps,
  schedule: SUMNET_RECIPE.schedule,
  validationImages: SUMNET_RECIPE.validationImages,
  trainAccuracyImages: SUMNET_RECIPE.trainAccuracyImages,
};
