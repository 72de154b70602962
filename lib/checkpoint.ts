/**
 * Checkpoints in TensorFlow.js' standard layers format: `model.json` (topology + weights
 * manifest) and `weights.bin`, loadable by `tf.loadLayersModel` anywhere. digitsum adds
 * `digitsum.json` (kind, seed, history, backend) and, for resumable runs, `optimizer.bin`.
 *
 * A checkpoint directory is written whole into a temporary sibling and renamed into place, so a
 * reader never sees a half-written checkpoint.
 */
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { ensureDir, exists, replaceDir } from "./fsutil.ts";
import { modelInfo, registerCustomLayers, type Task } from "./models.ts";
import type { AdamState, TorchAdam } from "./train.ts";

/** Metadata stored beside the weights. */
export interface CheckpointMeta {
  /** Model kind, e.g. `cnn-regressor`. */
  kind: string;
  [key: string]: unknown;
}

/** Options of {@link saveCheckpoint}. */
export interface SaveOptions {
  /** Also store the optimiser's state (for resuming). */
  optimizer?: TorchAdam;
}

/** A loaded checkpoint. */
export interface LoadedCheckpoint {
  model: tf.LayersModel;
  meta: CheckpointMeta;
  /** The optimiser state, when the checkpoint has one. */
  optimizerState?: AdamState;
}

function concatBuffers(parts: ArrayBuffer[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p), offset);
    offset += p.byteLength;
  }
  return out;
}

/** Save a model (and optionally its optimiser state) to `dir`, atomically. */
export async function saveCheckpoint(
  dir: string,
  model: tf.LayersModel,
  meta: CheckpointMeta,
  options: SaveOptions = {},
): Promise<void> {
  await ensureDir(dirname(dir) || ".");
  const tmp = `${dir}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await model.save({
      save: async (artifacts: tf.io.ModelArtifacts) => {
        const weightData = artifacts.weightData;
        const bytes = weightData instanceof ArrayBuffer
          ? new Uint8Array(weightData)
          : concatBuffers(weightData as ArrayBuffer[]);
        await Deno.writeFile(join(tmp, "weights.bin"), bytes);
        const modelJson = {
          format: artifacts.format ?? "layers-model",
          generatedBy: artifacts.generatedBy,
          convertedBy: "digitsum",
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
        };
        await Deno.writeTextFile(join(tmp, "model.json"), JSON.stringify(modelJson));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
      },
    });
    if (options.optimizer) {
      const state = await options.optimizer.getState();
      const tensors = [...state.m, ...state.v];
      const bytes = concatBuffers(tensors.map((a) => a.slice().buffer as ArrayBuffer));
      await Deno.writeFile(join(tmp, "optimizer.bin"), bytes);
      await Deno.writeTextFile(
        join(tmp, "optimizer.json"),
        JSON.stringify({ step: state.step, sizes: tensors.map((a) => a.length) }),
      );
    }
    await Deno.writeTextFile(join(tmp, "digitsum.json"), JSON.stringify(meta, null, 2) + "\n");
    await replaceDir(tmp, dir);
  } catch (error) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function readJson(path: string, dir: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot load checkpoint ${dir}: ${path} is missing`);
    }
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`Cannot load checkpoint ${dir}: ${path} is not valid JSON (${error})`);
  }
}

/** Byte size of a weights manifest (float32/int32 = 4 bytes per value, bool/uint8 = 1). */
function expectedBytes(specs: tf.io.WeightsManifestEntry[]): number {
  return specs.reduce((n, s) => {
    const size = s.shape.reduce((a, b) => a * b, 1);
    const per = s.dtype === "bool" ? 1 : 4;
    return n + size * per;
  }, 0);
}

/** Load a checkpoint written by {@link saveCheckpoint} (or any tfjs layers model directory). */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const modelJson = await readJson(join(dir, "model.json"), dir);
  const manifest = modelJson.weightsManifest as tf.io.WeightsManifestConfig | undefined;
  if (!modelJson.modelTopology || !Array.isArray(manifest)) {
    throw new Error(
      `Cannot load checkpoint ${dir}: model.json has no modelTopology or weightsManifest`,
    );
  }
  const specs = manifest.flatMap((group) => group.weights);
  const parts: Uint8Array[] = [];
  for (const path of manifest.flatMap((group) => group.paths)) {
    try {
      parts.push(await Deno.readFile(join(dir, path)));
    } catch {
      throw new Error(`Cannot load checkpoint ${dir}: weights file ${path} is missing`);
    }
  }
  const weights = concatBuffers(parts.map((p) => p.slice().buffer as ArrayBuffer));
  const expected = expectedBytes(specs);
  if (weights.byteLength !== expected) {
    throw new Error(
      `Cannot load checkpoint ${dir}: weights hold ${weights.byteLength} bytes, ` +
        `model.json expects ${expected} (truncated or mismatched files)`,
    );
  }
  await registerCustomLayers();
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory({
      modelTopology: modelJson.modelTopology as Record<string, unknown>,
      weightSpecs: specs,
      weightData: weights.buffer as ArrayBuffer,
    }));
  } catch (error) {
    throw new Error(`Cannot load checkpoint ${dir}: ${(error as Error).message}`);
  }
  const meta = (await exists(join(dir, "digitsum.json")))
    ? await readJson(join(dir, "digitsum.json"), dir) as CheckpointMeta
    : { kind: "unknown" };
  let optimizerState: AdamState | undefined;
  if (await exists(join(dir, "optimizer.json"))) {
    const info = await readJson(join(dir, "optimizer.json"), dir) as {
      step: number;
      sizes: number[];
    };
    const bytes = await Deno.readFile(join(dir, "optimizer.bin"));
    const total = info.sizes.reduce((a, b) => a + b, 0);
    if (bytes.byteLength !== total * 4) {
      throw new Error(
        `Cannot load checkpoint ${dir}: optimizer.bin holds ${bytes.byteLength} bytes, ` +
          `optimizer.json expects ${total * 4}`,
      );
    }
    const all = new Float32Array(bytes.slice().buffer);
    const arrays: Float32Array[] = [];
    let offset = 0;
    for (const size of info.sizes) {
      arrays.push(all.slice(offset, offset + size));
      offset += size;
    }
    const half = arrays.length / 2;
    optimizerState = { step: info.step, m: arrays.slice(0, half), v: arrays.slice(half) };
  }
  return { model, meta, optimizerState };
}

/**
 * The task of a loaded model: from its recorded kind, else from its output width (one output is
 * a regressor, several are logits), for tfjs models that digitsum did not write.
 */
export function checkpointTask(kind: string, model: tf.LayersModel): Task {
  try {
    return modelInfo(kind).task;
  } catch {
    const shape = model.outputs[0].shape;
    return shape[shape.length - 1] === 1 ? "regression" : "classification";
  }
}
