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
 * How it trains is `recipe.ts`; the inference core (the custom layers and the digit read-out, no
 * file I/O, so it also runs in a browser) is `core.ts`; `mod.ts` exports all three.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { IMAGE_HEIGHT, IMAGE_WIDTH, NUM_DIGITS } from "../../constants.ts";
import { CELL_WIDTH, NUM_CELL_CLASSES } from "../../data/strips.ts";
import type { BuildOptions } from "../registry.ts";
import {
  CELL_LOGITS_LAYER,
  type DigitRescale,
  MeanOverViews,
  type NoiseCleaning,
  registerLayers,
  SumCombine,
  type TestView,
  TestViews,
} from "./core.ts";

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
 * The test-time views of a new SumNet: the image; the image rolled by a quarter and by half a
 * cell (2 and 4 px) each way, so each digit is read with its centre at several places relative to
 * the cell borders; rolled 2 px up and down; and zoomed 1.1 and 1.2 times about its ink. Chosen on
 * the validation split with two models whose stage 1 never saw the validation digits (see
 * docs/BEYOND.md, "Test-time views, fifth round").
 */
export const DEFAULT_TEST_VIEWS: readonly Readonly<TestView>[] = Object.freeze([
  {},
  { shift: 2 },
  { shift: -2 },
  { shift: 4 },
  { shift: -4 },
  { rise: 2 },
  { rise: -2 },
  { zoom: 1.1 },
  { zoom: 1.2 },
]);

/**
 * How a new SumNet rescales images before its views ({@linkcode rescaleDigits} in core.ts): when
 * every group of ink is shorter than 19 px, or (with at least three groups) every one is taller
 * than 23 px, the digits are scaled to about 22 px. 19..23 px is the narrowest band that leaves
 * the course's composites as they are (1 of the 30,000 training and validation composites is
 * rescaled, none of the 10,000 test composites); 22 px read best of 21-23 px on validation
 * composites shrunk to about 13.5 px and enlarged to about 27 px (docs/BEYOND.md, "Rescaling
 * unusual digit heights").
 */
export const DEFAULT_RESCALE: Readonly<DigitRescale> = Object.freeze({
  below: 19,
  above: 23,
  to: 22,
});

/**
 * How a new SumNet cleans noisy images before anything else ({@linkcode cleanNoise} in core.ts): an
 * image is noisy where fewer than 65% of its dark pixels (below half the full brightness) are
 * exactly 0: 90-98% in the course's composites, 46-51% with Gaussian noise of sigma 16-48 gray
 * levels. Its ink is where the 3 x 3 smoothed image reaches 0.3, widened by a pixel; the rest
 * becomes 0 and the ink loses 0.1. Chosen on validation composites with noise of sigma 16, 32 and
 * 48 added (docs/BEYOND.md, "Cleaning noisy images").
 */
export const DEFAULT_CLEANING: Readonly<NoiseCleaning> = Object.freeze({
  emptyBelow: 0.65,
  inkAbove: 0.3,
  floor: 0.1,
});

/** The five horizontal rolls the shipped SumNets of the fourth round and before were built with. */
export const ROLL_TEST_VIEWS: readonly Readonly<TestView>[] = Object.freeze(
  [0, 2, -2, 4, -4].map((shift) => ({ shift })),
);

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
// Long because: the network layer by layer, with the tensor shape after each layer.
export function buildSumNet(
  options: BuildOptions & {
    widths?: Partial<SumNetWidths>;
    batchNorm?: boolean;
    /** Test-time views (default {@linkcode DEFAULT_TEST_VIEWS}; `[{}]` for none). */
    testViews?: readonly Readonly<TestView>[];
    /** Rescaling of unusual digit heights at inference (default {@linkcode DEFAULT_RESCALE}; `null` for none). */
    rescale?: Readonly<DigitRescale> | null;
    /** Cleaning of noisy images at inference (default {@linkcode DEFAULT_CLEANING}; `null` for none). */
    clean?: Readonly<NoiseCleaning> | null;
  } = {},
): tf.LayersModel {
  const h = options.inputHeight ?? IMAGE_HEIGHT;
  const w = options.inputWidth ?? IMAGE_WIDTH;
  if (h !== IMAGE_HEIGHT || w !== IMAGE_WIDTH) {
    throw new Error(`SumNet needs ${IMAGE_HEIGHT} x ${IMAGE_WIDTH} inputs, got ${h} x ${w}`);
  }
  const widths = { ...DEFAULT_WIDTHS, ...options.widths };
  const input = tf.input({ shape: [h, w, 1], name: "image" }); // [b, 40, 168, 1]
  const views = (options.testViews ?? DEFAULT_TEST_VIEWS).map((v) => ({ ...v }));
  // [views * b, 40, 168, 1] at inference, [b, 40, 168, 1] in training
  const rescale = options.rescale === undefined ? DEFAULT_RESCALE : options.rescale;
  const clean = options.clean === undefined ? DEFAULT_CLEANING : options.clean;
  let x = new TestViews({
    views,
    ...(rescale ? { rescale: { ...rescale } } : {}),
    ...(clean ? { clean: { ...clean } } : {}),
    name: "test_views",
  })
    .apply(input) as tf.SymbolicTensor;
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
  const output = new MeanOverViews({ views, name: "mean_over_views" })
    .apply(sums) as tf.SymbolicTensor; // [b, 37]
  return tf.model({ inputs: input, outputs: output, name: "sumnet" });
}

/** The sub-model from the image to the per-cell logits `[b, 1, 21, 11]` (shares weights). */
export function cellModel(model: tf.LayersModel): tf.LayersModel {
  return tf.model({ inputs: model.inputs, outputs: model.getLayer(CELL_LOGITS_LAYER).output });
}
