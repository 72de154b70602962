/**
 * Model factories for the study's networks, plus one dispatcher.
 *
 * Layer for layer as the PyTorch study (NHWC here, NCHW there). Every trainable Conv2D and Dense
 * layer uses PyTorch's default initialisation: weights and biases uniform in
 * (-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels x kernel area (or in_features).
 */
import * as tf from "@tensorflow/tfjs";
import { IMAGE_HEIGHT, IMAGE_WIDTH, NUM_SUMS } from "../constants.ts";
import { buildSumNet, SUMNET_RECIPE, SUMNET_SCRATCH_RECIPE } from "./sumnet/net.ts";
import type { BatchProgress, BatchSource } from "../training/train.ts";

/** What a model's output means, and so which loss and prediction rule apply. */
export type Task = "regression" | "classification";

/** Facts about one model kind. */
export interface ModelInfo {
  /** CLI name, e.g. `cnn-regressor`. */
  kind: string;
  /** Name in printed lines and tables, e.g. `CNN Regressor`. */
  title: string;
  /** The study's word in its "Overall Accuracy of ..." lines. */
  noun: "Regressor" | "Classifer" | "Model";
  /** Checkpoint directory prefix, e.g. `cnnregressor` (as the study's `cnnregressor_42.pt`). */
  prefix: string;
  task: Task;
  /** Part of the original study (false for digitsum's own models). */
  study: boolean;
  /** Rough wall-time estimate of a run on a backend, printed before heavy runs start. */
  estimateSeconds?: (
    work: { trainImages: number; evalImages: number; backend: string },
  ) => Promise<number>;
  /** How this kind trains where it differs from the study (digitsum's own models). */
  recipe?: TrainingRecipe;
}

/** What `runExperiment` needs to know of a model kind that does not train as the study did. */
export interface TrainingRecipe {
  /** Default epochs (instead of the study's 15). */
  epochs?: number;
  /** Default (peak) learning rate. */
  learningRate?: number;
  /** Reorder the training images every epoch (the study never does). */
  shuffleEachEpoch?: boolean;
  /** Learning rate of each batch (a schedule) from the run's rate, epochs and batches. */
  schedule?: (step: {
    epoch: number;
    batch: number;
    epochs: number;
    numBatches: number;
    learningRate: number;
  }) => number;
  /** Applied to the images of every training batch (not validation): data augmentation. */
  augment?: (x: tf.Tensor4D) => tf.Tensor4D | Promise<tf.Tensor4D>;
  /** A stage run once on the freshly built model before training (e.g. pretraining). */
  prepare?: (model: tf.LayersModel, context: PrepareContext) => Promise<void>;
  /**
   * Validate after each epoch on the first this many validation images only (whole batches);
   * the final validation figure still covers the whole split. Saves time when inference is dear.
   */
  validationImages?: number;
  /** Score the final training-split accuracy on the first this many training images only. */
  trainAccuracyImages?: number;
}

/** What a {@link TrainingRecipe}'s `prepare` stage gets. */
export interface PrepareContext {
  /** The run's seed. */
  seed: number;
  /** The run's image cap (quick runs), if any. */
  limit?: number;
  /** The run's validation loader. */
  val: BatchSource;
  /** Line printer. */
  log: (line: string) => void;
  /** Per-batch progress (for progress bars). */
  onBatchEnd?: (progress: BatchProgress) => void | Promise<void>;
  /** Awaited after every batch: true stops the stage part-way (see `trainModel`). */
  stopAfterBatch?: () => boolean | Promise<boolean>;
  /** The stage's own settings, overriding its defaults (e.g. fewer epochs for a quick run). */
  options?: Readonly<Record<string, unknown>>;
}

/** Options for {@link buildModel}. */
export interface BuildOptions {
  /** Input height (default 40). */
  inputHeight?: number;
  /** Input width (default 168). */
  inputWidth?: number;
  /** VGG only: path to the VGG11 safetensors weights. */
  weightsPath?: string;
}

/** A model factory: builds an untrained model. */
export type ModelFactory = (options: BuildOptions) => Promise<tf.LayersModel> | tf.LayersModel;

const REGISTRY = new Map<string, { info: ModelInfo; factory: ModelFactory }>();

/** Register a model kind (used by this module and by model families in other modules). */
export function registerModel(info: ModelInfo, factory: ModelFactory): void {
  REGISTRY.set(info.kind, { info, factory });
}

/** All registered model kinds, study models first. */
export function modelKinds(): string[] {
  return [...REGISTRY.keys()];
}

/** Facts about a model kind; throws on an unknown kind, listing the known ones. */
export function modelInfo(kind: string): ModelInfo {
  const entry = REGISTRY.get(kind);
  if (!entry) {
    throw new Error(`Unknown model '${kind}': expected one of ${modelKinds().join(", ")}`);
  }
  return entry.info;
}

/** Build an untrained model of the given kind (the one dispatcher every caller uses). */
export async function buildModel(
  kind: string,
  options: BuildOptions = {},
): Promise<tf.LayersModel> {
  modelInfo(kind);
  return await REGISTRY.get(kind)!.factory(options);
}

/** PyTorch's default init bound for a layer with this fan-in. */
export function torchInit(fanIn: number): ReturnType<typeof tf.initializers.randomUniform> {
  const bound = 1 / Math.sqrt(fanIn);
  return tf.initializers.randomUniform({ minval: -bound, maxval: bound });
}

/** Conv2D 3x3, stride 1, padding 1 ('same'), ReLU, with PyTorch init. */
function conv3x3(inChannels: number, filters: number, name: string): tf.layers.Layer {
  const init = torchInit(inChannels * 9);
  return tf.layers.conv2d({
    filters,
    kernelSize: 3,
    strides: 1,
    padding: "same",
    activation: "relu",
    kernelInitializer: init,
    biasInitializer: init,
    name,
  });
}

/** Dense layer with PyTorch init. */
export function torchDense(
  inFeatures: number,
  units: number,
  options: { activation?: "relu" | "linear"; name?: string; trainable?: boolean } = {},
): tf.layers.Layer {
  const init = torchInit(inFeatures);
  return tf.layers.dense({
    units,
    activation: options.activation ?? "linear",
    kernelInitializer: init,
    biasInitializer: init,
    name: options.name,
    trainable: options.trainable,
  });
}

/** The study's CNN: two conv blocks, a 26,880 -> 256 -> 128 dense head, then `outputs` units. */
function cnn(outputs: number, options: BuildOptions): tf.LayersModel {
  const h = options.inputHeight ?? IMAGE_HEIGHT;
  const w = options.inputWidth ?? IMAGE_WIDTH;
  const flat = 64 * Math.floor(Math.floor(h / 2) / 2) * Math.floor(Math.floor(w / 2) / 2);
  const model = tf.sequential({ name: outputs === 1 ? "cnn_regressor" : "cnn_classifier" });
  model.add(tf.layers.inputLayer({ inputShape: [h, w, 1] })); // [b, 40, 168, 1]
  model.add(conv3x3(1, 32, "conv1")); // [b, 40, 168, 32]
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: "pool1" })); // [b, 20, 84, 32]
  model.add(conv3x3(32, 64, "conv2")); // [b, 20, 84, 64]
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: "pool2" })); // [b, 10, 42, 64]
  model.add(tf.layers.flatten({ name: "flatten" })); // [b, 26880]
  model.add(torchDense(flat, 256, { activation: "relu", name: "fc1" })); // [b, 256]
  model.add(torchDense(256, 128, { activation: "relu", name: "fc2" })); // [b, 128]
  model.add(torchDense(128, outputs, { name: "out" })); // [b, 1] or [b, 37]
  return model;
}

/** The study's `CNNRegressor`: one output, the predicted sum (6,933,377 parameters). */
export function buildCnnRegressor(options: BuildOptions = {}): tf.LayersModel {
  return cnn(1, options);
}

/** The study's `CNNClassifier`: 37 logits for sums 0..36 (6,938,021 parameters). */
export function buildCnnClassifier(options: BuildOptions = {}): tf.LayersModel {
  return cnn(NUM_SUMS, options);
}

registerModel(
  {
    kind: "cnn-regressor",
    title: "CNN Regressor",
    noun: "Regressor",
    prefix: "cnnregressor",
    task: "regression",
    study: true,
  },
  buildCnnRegressor,
);
registerModel(
  {
    kind: "cnn-classifier",
    title: "CNN Classifier",
    noun: "Classifer",
    prefix: "cnnclassifier",
    task: "classification",
    study: true,
  },
  buildCnnClassifier,
);
registerModel(
  {
    kind: "vgg-regressor",
    title: "VGG Regressor",
    noun: "Regressor",
    prefix: "vggregressor",
    task: "regression",
    study: true,
    estimateSeconds: async ({ trainImages, evalImages, backend }) => {
      const { estimateVggSeconds } = await import("./vgg.ts");
      return estimateVggSeconds(trainImages, backend) +
        estimateVggSeconds(evalImages, backend, { training: false });
    },
  },
  async (options) => {
    const { buildVggRegressor } = await import("./vgg.ts");
    return await buildVggRegressor(options);
  },
);

/** Total number of parameters (trainable and frozen) of a model. */
export function countParams(model: tf.LayersModel): number {
  return model.countParams();
}

/** Modules that define custom (serialisable) layers; each exports `registerLayers()`. */
const CUSTOM_LAYER_MODULES: Array<() => Promise<{ registerLayers?: () => void }>> = [
  () => import("./vgg.ts"),
  () => import("./sumnet/net.ts"),
];

/** Register every custom layer class so that checkpoints using them can be loaded. */
export async function registerCustomLayers(): Promise<void> {
  for (const load of CUSTOM_LAYER_MODULES) {
    try {
      (await load()).registerLayers?.();
    } catch (error) {
      if (!(error instanceof TypeError) || !String(error).includes("Module not found")) throw error;
    }
  }
}

// digitsum's own model (not part of the study): lib/sumnet.ts.
registerModel(
  {
    kind: "sumnet",
    title: "SumNet",
    noun: "Model",
    prefix: "sumnet",
    task: "classification",
    study: false,
    recipe: SUMNET_RECIPE,
  },
  buildSumNet,
);
registerModel(
  {
    kind: "sumnet-scratch",
    title: "SumNet (sums only)",
    noun: "Model",
    prefix: "sumnetscratch",
    task: "classification",
    study: false,
    recipe: SUMNET_SCRATCH_RECIPE,
  },
  buildSumNet,
);
