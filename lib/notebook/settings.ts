/**
 * A notebook's settings: one quick-mode switch (`DIGITSUM_QUICK=1`), the run configuration its
 * models share (what `deno task train` would use) and repository-root paths (the Deno kernel's
 * working directory is the notebook's folder).
 *
 * @module
 */
import { isAbsolute, normalize, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BATCH_SIZE,
  DEFAULT_DATA_DIR,
  DEFAULT_MODELS_DIR,
  EPOCHS,
  LEARNING_RATE,
  TRAIN_FRACTION,
} from "../constants.ts";
import { type RunConfig, studyConfig } from "../training/experiment.ts";
import { vggWeightsPath } from "../models/vgg.ts";
import { modelInfo } from "../models/mod.ts";
import { installCellEndHook, listenForInterrupts } from "./kernel.ts";
/** Environment variable that switches every notebook to quick mode (`1`) or full mode (`0`). */
export const QUICK_ENV = "DIGITSUM_QUICK";

/** Training images per run in quick mode (validation gets a quarter as many). */
export const QUICK_LIMIT = 512;

/** Epochs per run in quick mode. */
export const QUICK_EPOCHS = 1;

/** Held-out test images scored per model in quick mode. */
export const QUICK_TEST_LIMIT = 256;

/** The seed of the study's notebook. */
export const NOTEBOOK_SEED = 42;

/** Where quick-mode checkpoints go, so that they never replace real ones in `trained_models/`. */
export const QUICK_MODELS_DIR = "runs/notebook_quick/trained_models";

/** Environment variable asking for nodeplotlib's interactive window (`window`). */
export const PLOT_ENV = "DIGITSUM_PLOT";

/** Absolute path of the repository root (computed from this file, not the working directory). */
export const REPO_ROOT: string = normalize(fileURLToPath(new URL("../../", import.meta.url)))
  .replace(/[\\/]$/, "");

/** An absolute path inside the repository, e.g. `repoPath("data")`; absolute paths stay. */
export function repoPath(...parts: string[]): string {
  return resolve(REPO_ROOT, ...parts);
}

/** A path relative to the repository root, for printing (absolute when outside it). */
export function displayPath(path: string): string {
  const rel = relative(REPO_ROOT, path);
  return rel.startsWith("..") || isAbsolute(rel) ? path : rel || ".";
}

export function readEnv(
  name: string,
  env?: Record<string, string | undefined>,
): string | undefined {
  if (env) return env[name];
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission: defaults apply
  }
}

/**
 * Whether quick mode is on. Accepts `1`/`true`/`yes`/`on` and `0`/`false`/`no`/`off`/empty;
 * anything else throws, naming the variable.
 *
 * @param env Variables to read instead of the process environment (for tests).
 */
export function isQuickMode(env?: Record<string, string | undefined>): boolean {
  const raw = readEnv(QUICK_ENV, env);
  const value = (raw ?? "").trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["", "0", "false", "no", "off"].includes(value)) return false;
  throw new Error(`${QUICK_ENV} must be 1 (quick) or 0 (full), got '${raw}'`);
}

/**
 * Everything a notebook needs to know about the run it is part of: the run configuration shared
 * by every model of the notebook (`dataDir` absolute), plus the notebook's own paths.
 */
export interface NotebookSettings extends Omit<RunConfig, "model"> {
  /** Quick mode: a small subset and {@link QUICK_EPOCHS} epoch(s) per run. */
  quick: boolean;
  /** Absolute checkpoint directory (`<repo>/trained_models`; a scratch one in quick mode). */
  modelsDir: string;
  /** Absolute path of the VGG11 weights (env `DIGITSUM_VGG_WEIGHTS`, default in `data/`). */
  vggWeights: string;
}

/**
 * The notebook's configuration: the study's (15 epochs, all 24,000 training images, seed 42)
 * unless `DIGITSUM_QUICK=1`, then {@link QUICK_LIMIT} images and {@link QUICK_EPOCHS} epoch.
 * Inside the Deno kernel it also installs {@link installCellEndHook} and
 * {@link listenForInterrupts} (the first cell of every notebook calls it).
 *
 * @param env Variables to read instead of the process environment (for tests).
 */
export function notebookSettings(env?: Record<string, string | undefined>): NotebookSettings {
  installCellEndHook();
  listenForInterrupts();
  const quick = isQuickMode(env);
  const dataDir = readEnv("DIGITSUM_DATA_DIR", env);
  return {
    quick,
    seed: NOTEBOOK_SEED,
    epochs: quick ? QUICK_EPOCHS : EPOCHS,
    batchSize: BATCH_SIZE,
    learningRate: LEARNING_RATE,
    trainFraction: TRAIN_FRACTION,
    limit: quick ? QUICK_LIMIT : undefined,
    backend: readEnv("DIGITSUM_BACKEND", env) || "auto",
    dataDir: repoPath(dataDir || DEFAULT_DATA_DIR),
    modelsDir: repoPath(quick ? QUICK_MODELS_DIR : DEFAULT_MODELS_DIR),
    vggWeights: repoPath(vggWeightsPath(readEnv("DIGITSUM_VGG_WEIGHTS", env))),
  };
}

/**
 * The first cell's statement of the mode a notebook runs in: the study's configuration, or with
 * `models`, each model's own (a model with a recipe trains with its epochs and learning rate).
 */
export function describeSettings(
  settings: NotebookSettings,
  options: { models?: readonly string[] } = {},
): string {
  if (settings.quick) {
    return [
      `QUICK MODE (${QUICK_ENV}=1): every run uses the first ${settings.limit} training images ` +
      `and ${settings.epochs} epoch(s).`,
      `The numbers below are a smoke test of the code path, not the study's results.`,
      `Run without ${QUICK_ENV} (or with ${QUICK_ENV}=0) for the study's configuration.`,
    ].join("\n");
  }
  const hint = `Set ${QUICK_ENV}=1 before starting Jupyter for a quick smoke run.`;
  if (options.models) {
    // Models with a recipe of their own (SumNet) train with their epochs and learning rate.
    const lines = options.models.map((model) => {
      const config = modelRunConfig(model, settings);
      return `  ${model}: ${config.epochs} epochs, batch ${config.batchSize}, ` +
        `Adam lr ${config.learningRate}${
          modelInfo(model).recipe?.schedule ? " (peak of its schedule)" : ""
        }, all training images`;
    });
    return [
      `FULL MODE, seed ${settings.seed}; each model trains with its own recipe:`,
      ...lines,
      hint,
    ]
      .join("\n");
  }
  return [
    `FULL MODE: the study's configuration (all training images, ${settings.epochs} epochs, ` +
    `batch ${settings.batchSize}, Adam lr ${settings.learningRate}, seed ${settings.seed}).`,
    hint,
  ].join("\n");
}

/**
 * The configuration `deno task train --model <kind>` would use, with this notebook's seed, data
 * and backend: a model's own recipe (epochs, learning rate) in full mode, and
 * {@link QUICK_EPOCHS} epoch on {@link QUICK_LIMIT} images in quick mode.
 */
export function modelRunConfig(model: string, settings: NotebookSettings): RunConfig {
  return studyConfig(model, {
    seed: settings.seed,
    limit: settings.limit,
    backend: settings.backend,
    dataDir: settings.dataDir,
    ...(settings.quick ? { epochs: settings.epochs } : {}),
  });
}
