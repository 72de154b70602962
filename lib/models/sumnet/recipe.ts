/**
 * How SumNet trains ({@linkcode SUMNET_RECIPE}): it first pretrains the cell classifier on strips
 * pasted from MNIST's own labelled training digits (`data/strips.ts`), then trains the whole model
 * on the composites' sums with a cosine schedule and augmentation that rolls images at their gaps.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { loadMnistTrainDigits, NOTHING, NUM_CELL_CLASSES, StripLoader } from "../../data/strips.ts";
import { firstImages } from "../../data/batch.ts";
import type { PrepareContext, TrainingRecipe } from "../registry.ts";
import { type EpochRecord, evaluateAccuracy, trainModel } from "../../training/train.ts";
import { cellModel } from "./net.ts";

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
