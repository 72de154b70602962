/**
 * What a model kind is (its facts, its training recipe) and the one registry that maps kinds to
 * factories. This module registers nothing itself: `models/mod.ts` registers every kind, so
 * that no model module imports back up. Callers use `models/mod.ts`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { BatchSource } from "../data/batch.ts";
import type { BatchProgress } from "../runtime/progress.ts";

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
  /** Part of the original study (false for digitsum's own models): a column of its tables. */
  study: boolean;
  /**
   * Why this kind cannot be built on this machine (e.g. `VGG11 weights not found at ...`), or
   * `undefined` when it can. The sweep records such runs as skipped; notebooks skip their cell.
   */
  unavailableReason?: (options: BuildOptions) => Promise<string | undefined>;
  /** Rough wall-time estimate of a run on a backend, printed before heavy runs start. */
  estimateSeconds?: (
    work: { trainImages: number; evalImages: number; backend: string },
  ) => number;
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
  /**
   * A stage run once on the freshly built model before training (e.g. pretraining). What it
   * returns says what it did; checkpoints record it as `prepared`.
   */
  prepare?: (
    model: tf.LayersModel,
    context: PrepareContext,
  ) => Promise<Readonly<Record<string, unknown>> | void>;
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
  /** The run's data folder (its course files), where the recipe needs it. */
  dataDir?: string;
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

/** The kinds of the original study, in the column order of its tables. */
export function studyModelKinds(): string[] {
  return [...REGISTRY.values()].filter((e) => e.info.study).map((e) => e.info.kind);
}

/**
 * Thrown by a factory when its model cannot be built on this machine for want of something
 * outside digitsum (e.g. downloaded weights); the sweep records the run as skipped.
 */
export class ModelUnavailableError extends Error {
  override name = "ModelUnavailableError";
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
