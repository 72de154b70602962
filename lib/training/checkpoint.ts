/**
 * Checkpoints in TensorFlow.js' standard layers format: `model.json` (topology + weights
 * manifest) and `weights.bin`, loadable by `tf.loadLayersModel` anywhere. digitsum adds
 * `digitsum.json` (kind, seed, history, backend) and, for resumable runs, `optimizer.bin`.
 *
 * A checkpoint directory is written whole into a temporary sibling and renamed into place, so a
 * reader never sees a half-written checkpoint.
 */
import * as tf from "@tensorflow/tfjs";
import { basename, dirname, join } from "node:path";
import { IMAGE_HEIGHT, IMAGE_WIDTH } from "../constants.ts";
import { ensureDir, exists, killPoint, replaceDir } from "../io/fsutil.ts";
import { type Task } from "../models/registry.ts";
import { type AdamState, historyProblem, type TorchAdam, trainableVariables } from "./train.ts";
import { modelInfo, registerCustomLayers } from "../models/mod.ts";
import { isCount, isObject } from "../io/json.ts";

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

/** Suffix of a checkpoint being written (`<dir>.tmp-<pid>-<random>`). */
const TMP_MARK = ".tmp-";
/** Suffix of the checkpoint a new one replaces, while the swap is under way. */
const OLD_MARK = ".old-";
/** The file `saveCheckpoint` writes last: a temporary directory with it is complete. */
const META_FILE = "digitsum.json";

/**
 * Finish or undo a checkpoint swap that a killed process left half done, and remove its
 * leftovers: when `dir` is missing, the newest complete `<dir>.tmp-*` (or else the newest
 * `<dir>.old-*`) becomes `dir`; the other `<dir>.tmp-*` and `<dir>.old-*` siblings are deleted.
 * Only for a directory no other live process is writing (a run's own checkpoint or state).
 *
 * @param dir The checkpoint directory.
 * @returns Whether `dir` exists afterwards.
 */
export async function recoverCheckpoint(dir: string): Promise<boolean> {
  const parent = dirname(dir) || ".";
  const base = basename(dir);
  const leftovers: Array<{ path: string; kind: "tmp" | "old"; mtime: number }> = [];
  try {
    for await (const entry of Deno.readDir(parent)) {
      if (!entry.isDirectory || !entry.name.startsWith(base)) continue;
      const rest = entry.name.slice(base.length);
      const kind = rest.startsWith(TMP_MARK) ? "tmp" : rest.startsWith(OLD_MARK) ? "old" : null;
      if (!kind) continue;
      const path = join(parent, entry.name);
      const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
      leftovers.push({ path, kind, mtime });
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  if (!(await exists(dir))) {
    const newestFirst = [...leftovers].sort((a, b) => b.mtime - a.mtime);
    const complete = [];
    for (const leftover of newestFirst) {
      if (leftover.kind === "tmp" && !(await exists(join(leftover.path, META_FILE)))) continue;
      complete.push(leftover);
    }
    const best = complete.find((l) => l.kind === "tmp") ?? complete.find((l) => l.kind === "old");
    if (best) {
      await Deno.rename(best.path, dir);
      leftovers.splice(leftovers.indexOf(best), 1);
    }
  }
  for (const leftover of leftovers) {
    await Deno.remove(leftover.path, { recursive: true }).catch(() => {});
  }
  return await exists(dir);
}

/** Save a model (and optionally its optimiser state) to `dir`, atomically. */
export async function saveCheckpoint(
  dir: string,
  model: tf.LayersModel,
  meta: CheckpointMeta,
  options: SaveOptions = {},
): Promise<void> {
  await ensureDir(dirname(dir) || ".");
  const tmp = `${dir}${TMP_MARK}${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await model.save({
      save: async (artifacts: tf.io.ModelArtifacts) => {
        const weightData = artifacts.weightData;
        const bytes = weightData instanceof ArrayBuffer
          ? new Uint8Array(weightData)
          : concatBuffers(weightData as ArrayBuffer[]);
        await Deno.writeFile(join(tmp, "weights.bin"), bytes);
        killPoint("checkpoint");
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
    await Deno.writeTextFile(join(tmp, META_FILE), JSON.stringify(meta, null, 2) + "\n");
    // A kill between the renames leaves no `dir`: recoverCheckpoint() finishes the swap.
    await replaceDir(tmp, dir, { killPoint: "checkpoint-swap" });
  } catch (error) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw error;
  }
}

/** Largest JSON file of a checkpoint accepted (model.json of SumNet: 6 KB). */
const MAX_JSON_BYTES = 64 * 2 ** 20;
/** Bytes per value of the weight dtypes of the tfjs layers format. */
const WEIGHT_DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1 };

/** Error `Cannot load checkpoint <dir>: <file> <why>`. */
function problem(dir: string, file: string, why: string): Error {
  return new Error(`Cannot load checkpoint ${dir}: ${file} ${why}`);
}

/** A value read from a file, quoted for a message (JSON.stringify recurses: guarded). */
function quote(value: unknown): string {
  try {
    return (JSON.stringify(value) ?? "nothing").slice(0, 80);
  } catch {
    return "(nested too deep)";
  }
}

/** Size of a checkpoint file, or `undefined` when it does not exist. */
async function fileSize(dir: string, file: string): Promise<number | undefined> {
  try {
    const info = await Deno.stat(join(dir, file));
    if (!info.isFile) throw problem(dir, file, "is not a file");
    return info.size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof Error && error.message.startsWith("Cannot load checkpoint")) throw error;
    throw problem(dir, file, `cannot be read (${(error as Error).message})`);
  }
}

/** A checkpoint's JSON file as an object; errors name the file. */
async function readJson(dir: string, file: string): Promise<Record<string, unknown>> {
  const size = await fileSize(dir, file);
  if (size === undefined) throw problem(dir, file, "is missing");
  if (size > MAX_JSON_BYTES) {
    throw problem(dir, file, `is ${size} bytes, more than the ${MAX_JSON_BYTES} accepted`);
  }
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(join(dir, file)));
  } catch (error) {
    throw problem(dir, file, `is not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(value)) throw problem(dir, file, "is not a JSON object");
  return value;
}

/** A checkpoint file's bytes, after checking that it has `expected` bytes. */
async function readSized(dir: string, file: string, expected: number, what: string) {
  const size = await fileSize(dir, file);
  if (size === undefined) throw problem(dir, file, "is missing");
  if (size !== expected) {
    throw problem(dir, file, `holds ${size} bytes, ${what} expects ${expected}`);
  }
  try {
    return await Deno.readFile(join(dir, file));
  } catch (error) {
    throw problem(dir, file, `cannot be read (${(error as Error).message})`);
  }
}

/** A plain file name inside the checkpoint directory (no folders, no `..`). */
function isPlainFileName(value: unknown): value is string {
  return typeof value === "string" && value !== "" && value !== "." && value !== ".." &&
    !/[\\/\0]/.test(value);
}

/** The weights manifest of `model.json`, checked: file names, names, shapes, dtypes, sizes. */
function checkManifest(
  modelJson: Record<string, unknown>,
  dir: string,
): { specs: tf.io.WeightsManifestEntry[]; paths: string[]; bytes: number; values: number } {
  const manifest = modelJson.weightsManifest;
  if (!isObject(modelJson.modelTopology) || !Array.isArray(manifest)) {
    throw problem(dir, "model.json", "has no modelTopology or weightsManifest");
  }
  const specs: tf.io.WeightsManifestEntry[] = [];
  const paths: string[] = [];
  let bytes = 0;
  let values = 0;
  for (const [g, group] of manifest.entries()) {
    if (!isObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw problem(dir, "model.json", `weightsManifest[${g}] needs 'paths' and 'weights' lists`);
    }
    for (const path of group.paths) {
      if (!isPlainFileName(path)) {
        throw problem(
          dir,
          "model.json",
          `lists weights file ${quote(path)}; expected a file name in the checkpoint`,
        );
      }
      paths.push(path);
    }
    for (const spec of group.weights) {
      const label = isObject(spec) && typeof spec.name === "string" ? `'${spec.name}'` : "entry";
      if (!isObject(spec) || typeof spec.name !== "string") {
        throw problem(dir, "model.json", `has a weight entry without a name`);
      }
      if (!Array.isArray(spec.shape) || !spec.shape.every(isCount)) {
        throw problem(dir, "model.json", `weight ${label} has an invalid shape`);
      }
      if (typeof spec.dtype !== "string" || !Object.hasOwn(WEIGHT_DTYPE_BYTES, spec.dtype)) {
        throw problem(
          dir,
          "model.json",
          `weight ${label} has unsupported dtype (supported: float32, int32, bool)`,
        );
      }
      if (spec.quantization !== undefined) {
        throw problem(dir, "model.json", `weight ${label} is quantized (not supported)`);
      }
      const count = (spec.shape as number[]).reduce((a, b) => a * b, 1);
      values += count;
      bytes += count * WEIGHT_DTYPE_BYTES[spec.dtype];
      if (!Number.isSafeInteger(bytes)) throw problem(dir, "model.json", "lists too many weights");
      specs.push(spec as unknown as tf.io.WeightsManifestEntry);
    }
  }
  return { specs, paths, bytes, values };
}

/**
 * Check that the layers of a functional topology (and of the models nested in it) connect:
 * every layer call takes its inputs from calls that can happen first. tfjs rebuilds the graph by
 * retrying the calls whose inputs do not exist yet until none is left, so a call that can never
 * happen (an input from a missing layer or node, a cycle) would make it loop forever.
 */
function checkGraph(topology: unknown, dir: string): void {
  const model = isObject(topology) && isObject(topology.model_config)
    ? topology.model_config
    : topology;
  const config = isObject(model) ? model.config : undefined;
  if (!isObject(config) || !Array.isArray(config.layers)) return;
  for (const layer of config.layers) checkGraph(layer, dir); // nested models
  const layers = config.layers.filter(
    (l): l is Record<string, unknown> =>
      isObject(l) && typeof l.name === "string" && Array.isArray(l.inbound_nodes),
  );
  if (layers.length === 0) return; // Sequential: no calls to replay
  const known = new Set(layers.map((l) => l.name as string));
  // Nodes (calls) per layer; an InputLayer has its node from the start.
  const nodes = new Map(
    layers.map((l) => [l.name as string, l.class_name === "InputLayer" ? 1 : 0]),
  );
  const pending = new Map(
    layers.map((l) => [l.name as string, [...(l.inbound_nodes as unknown[])]]),
  );
  let left = [...pending.values()].reduce((n, calls) => n + calls.length, 0);
  while (left > 0) {
    let progress = false;
    for (const layer of layers) {
      const name = layer.name as string;
      const waiting: unknown[] = [];
      for (const call of pending.get(name)!) {
        if (!Array.isArray(call)) return; // tfjs reports this one itself
        let ready = true;
        for (const input of call) {
          const [from, index] = Array.isArray(input) ? input : [];
          if (typeof from !== "string" || !known.has(from)) {
            throw problem(
              dir,
              "model.json",
              `connects layer '${name}' to ${quote(from)}, which is not ` +
                "a layer of the model",
            );
          }
          if (!(typeof index === "number" && nodes.get(from)! > index)) ready = false;
        }
        if (!ready) {
          waiting.push(call);
          continue;
        }
        if (call.length > 0) nodes.set(name, nodes.get(name)! + 1);
        left -= 1;
        progress = true;
      }
      pending.set(name, waiting);
    }
    if (!progress) {
      const stuck = [...pending].find(([, calls]) => calls.length > 0)![0];
      throw problem(
        dir,
        "model.json",
        `has layer calls whose inputs never exist (layer '${stuck}': a missing node or a cycle)`,
      );
    }
  }
}

/** Loads are one at a time: {@linkcode withWeightBudget} patches a shared prototype. */
let loadQueue: Promise<unknown> = Promise.resolve();

/**
 * Runs `build` while every weight a layer creates is counted: the topology may create no more
 * values than the weights manifest holds. A layer whose config asks for a huge weight (units or
 * filters in the billions) is refused before tfjs allocates it.
 */
async function withWeightBudget<T>(budget: number, build: () => Promise<T>): Promise<T> {
  const run = async () => {
    const proto = tf.layers.Layer.prototype as unknown as {
      addWeight: (name: string, shape: unknown, ...rest: unknown[]) => unknown;
    };
    const original = proto.addWeight;
    let used = 0;
    proto.addWeight = function (this: unknown, name, shape, ...rest) {
      const size = Array.isArray(shape)
        ? shape.reduce((a: number, b: unknown) => a * (typeof b === "number" ? b : NaN), 1)
        : NaN;
      used += size;
      if (!(used <= budget)) {
        throw new WeightBudgetError(
          `its layers ask for more weight values (${
            Number.isFinite(used) ? used : "an invalid shape"
          } by weight '${name}') than the weights manifest holds (${budget})`,
        );
      }
      return original.call(this, name, shape, ...rest);
    };
    try {
      return await build();
    } finally {
      proto.addWeight = original;
    }
  };
  const result = loadQueue.then(run, run);
  loadQueue = result.catch(() => {});
  return await result;
}

/** Thrown by {@linkcode withWeightBudget}. */
class WeightBudgetError extends Error {}

/** Check the fields of `digitsum.json` that digitsum reads back (kind, history, config, ...). */
function checkMeta(meta: Record<string, unknown>, dir: string): CheckpointMeta {
  const fail = (why: string) => problem(dir, META_FILE, why);
  if (typeof meta.kind !== "string" || meta.kind === "") throw fail("has no model 'kind'");
  if (meta.history !== undefined) {
    const problem = historyProblem(meta.history);
    if (problem) throw fail(`has an invalid history: ${problem}`);
  }
  if (meta.config !== undefined && !isObject(meta.config)) throw fail("has an invalid 'config'");
  if (meta.rng !== undefined && !isObject(meta.rng)) throw fail("has an invalid 'rng' state");
  if (meta.seconds !== undefined && !(typeof meta.seconds === "number" && meta.seconds >= 0)) {
    throw fail("has an invalid 'seconds'");
  }
  return meta as CheckpointMeta;
}

/** `optimizer.json`, checked on its own: a step and a list of sizes matching `optimizer.bin`. */
async function readOptimizerInfo(dir: string): Promise<{ step: number; sizes: number[] }> {
  const info = await readJson(dir, "optimizer.json");
  if (!isCount(info.step)) throw problem(dir, "optimizer.json", "has an invalid 'step'");
  if (!Array.isArray(info.sizes) || !info.sizes.every(isCount)) {
    throw problem(dir, "optimizer.json", "has no list of moment 'sizes'");
  }
  const total = (info.sizes as number[]).reduce((a, b) => a + b, 0);
  const size = await fileSize(dir, "optimizer.bin");
  if (size === undefined) throw problem(dir, "optimizer.bin", "is missing");
  if (size !== total * 4) {
    throw problem(dir, "optimizer.bin", `holds ${size} bytes, optimizer.json expects ${total * 4}`);
  }
  return { step: info.step, sizes: info.sizes as number[] };
}

/** The optimiser state of a checkpoint, checked against the model's trainable weights. */
async function readOptimizer(
  dir: string,
  info: { step: number; sizes: number[] },
  model: tf.LayersModel,
): Promise<AdamState> {
  const sizes = trainableVariables(model).map((v) => v.size);
  const expected = [...sizes, ...sizes];
  if (
    info.sizes.length !== expected.length || info.sizes.some((size, i) => size !== expected[i])
  ) {
    throw problem(
      dir,
      "optimizer.json",
      `does not match the model of model.json: 'sizes' must list its ${sizes.length} ` +
        "trainable weights' sizes twice (Adam's first and second moments)",
    );
  }
  const total = expected.reduce((a, b) => a + b, 0);
  const bytes = await readSized(dir, "optimizer.bin", total * 4, "optimizer.json");
  const all = new Float32Array(bytes.slice().buffer);
  const arrays: Float32Array[] = [];
  let offset = 0;
  for (const size of expected) {
    arrays.push(all.slice(offset, offset + size));
    offset += size;
  }
  const half = arrays.length / 2;
  return { step: info.step, m: arrays.slice(0, half), v: arrays.slice(half) };
}

/**
 * Load a checkpoint written by {@link saveCheckpoint} (or any tfjs layers model directory).
 * Every file is checked before it is used (the JSON files and all sizes before the model is
 * built): a malformed, truncated or mismatched file gives one error naming it (`Cannot load
 * checkpoint <dir>: weights.bin holds ...`), never a crash, a hang or an allocation its header
 * asks for.
 */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const modelJson = await readJson(dir, "model.json");
  const { specs, paths, bytes, values } = checkManifest(modelJson, dir);
  checkGraph(modelJson.modelTopology, dir);
  const meta = (await fileSize(dir, META_FILE)) === undefined
    ? { kind: "unknown" }
    : checkMeta(await readJson(dir, META_FILE), dir);
  const optimizerInfo = (await fileSize(dir, "optimizer.json")) === undefined
    ? undefined
    : await readOptimizerInfo(dir);
  let found = 0;
  const sizes: number[] = [];
  for (const path of paths) {
    const size = await fileSize(dir, path);
    if (size === undefined) {
      throw new Error(`Cannot load checkpoint ${dir}: weights file ${path} is missing`);
    }
    sizes.push(size);
    found += size;
  }
  if (found !== bytes) {
    throw problem(
      dir,
      paths.join(" + ") || "(no weights file)",
      `${paths.length === 1 ? "holds" : "hold"} ${found} bytes, model.json expects ${bytes} ` +
        "(truncated or mismatched files)",
    );
  }
  const parts: Uint8Array[] = [];
  for (const [i, path] of paths.entries()) {
    parts.push(await readSized(dir, path, sizes[i], "its size a moment ago"));
  }
  const weights = concatBuffers(parts.map((p) => p.slice().buffer as ArrayBuffer));
  registerCustomLayers();
  let model: tf.LayersModel;
  try {
    model = await withWeightBudget(values, () =>
      tf.loadLayersModel(tf.io.fromMemory({
        modelTopology: modelJson.modelTopology as Record<string, unknown>,
        weightSpecs: specs,
        weightData: weights.buffer as ArrayBuffer,
      })));
  } catch (error) {
    const why = error instanceof WeightBudgetError
      ? error.message
      : `does not describe a model tfjs can build (tfjs says: ${(error as Error).message})`;
    throw problem(dir, "model.json", why);
  }
  try {
    const optimizerState = optimizerInfo && await readOptimizer(dir, optimizerInfo, model);
    return { model, meta, optimizerState };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * Check that a loaded model reads the task's images: one float32 input `[N, 40, 168, 1]`, no
 * layer with an empty output, and one black image goes through it (a topology can load and still
 * fail on data, e.g. a reshape to the wrong size).
 *
 * @param model A loaded model.
 * @param dir Its checkpoint directory, for the error.
 * @throws Error `Cannot use checkpoint <dir>: model.json describes ...` otherwise.
 */
export function checkImageModel(model: tf.LayersModel, dir: string): void {
  const input = model.inputs.length === 1 ? model.inputs[0] : undefined;
  const shape = input?.shape;
  const expected = [IMAGE_HEIGHT, IMAGE_WIDTH, 1];
  if (
    !input || !shape || shape.length !== 4 || expected.some((d, i) => shape[i + 1] !== d) ||
    input.dtype !== "float32"
  ) {
    const reads = input
      ? `${input.dtype} [${shape!.map((d) => d ?? "N").join(", ")}]`
      : `${model.inputs.length} inputs`;
    throw new Error(
      `Cannot use checkpoint ${dir}: model.json describes a model that reads ${reads}, ` +
        `expected float32 images [N, ${expected.join(", ")}]`,
    );
  }
  // A layer with an empty output would make some backends' kernels read out of bounds (wasm
  // traps, and its heap is unusable afterwards): refuse it from the shapes, before any data.
  for (const layer of model.layers) {
    const shapes =
      (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as (
        number | null
      )[][];
    const empty = shapes.find((s) => s.some((d) => d !== null && d <= 0));
    if (empty) {
      throw new Error(
        `Cannot use checkpoint ${dir}: model.json describes a model whose layer '${layer.name}' ` +
          `outputs [${empty.map((d) => d ?? "N").join(", ")}] for ${IMAGE_HEIGHT} x ` +
          `${IMAGE_WIDTH} images`,
      );
    }
  }
  try {
    tf.tidy(() => {
      const outputs = model.predict(tf.zeros([1, ...expected])) as tf.Tensor | tf.Tensor[];
      for (const output of [outputs].flat()) output.dataSync();
    });
  } catch (error) {
    throw new Error(
      `Cannot use checkpoint ${dir}: the model of model.json fails on an image ` +
        `(tfjs says: ${(error as Error).message})`,
    );
  }
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
