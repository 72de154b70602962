/**
 * THE train loop and the study's accuracy arithmetic, shared by CLIs, notebooks, sweep and tests.
 *
 * Faithful to the study: Adam with PyTorch's update rule and defaults (lr 1e-3, betas 0.9/0.999,
 * eps 1e-8; TensorFlow.js' own Adam defaults to eps 1e-7), MSE for regressors and cross entropy
 * for the classifier, batches in loader order, one printed line per epoch in the study's format,
 * and validation accuracy as the mean over batches of each batch's percentage correct.
 */
import * as tf from "@tensorflow/tfjs";
import type { BatchSource } from "../data/batch.ts";
import type { Task } from "../models/registry.ts";
import type { BatchProgress } from "../runtime/progress.ts";
import { nativeAdamAvailable, nativeTorchAdam } from "../runtime/native_kernels.ts";

/** One epoch of training history. */
export interface EpochRecord {
  /** 1-based epoch number. */
  epoch: number;
  /** Mean of the batch losses (the study's "Train Loss"). */
  trainLoss: number;
  /** Mean over validation batches of each batch's % correct (the study's "Val Accuracy"). */
  valAccuracy: number;
  /** Wall seconds for the epoch (training and validation). */
  seconds: number;
  /** Training images per second during the epoch. */
  trainImagesPerSecond: number;
}

/** The numbers of an epoch record besides its epoch (null where JSON had NaN or Infinity). */
const EPOCH_NUMBERS = ["trainLoss", "valAccuracy", "seconds", "trainImagesPerSecond"] as const;

/**
 * Why `value` (read from a file) is not a list of epoch records 1, 2, ... with their numbers,
 * or `undefined`. A number may be `null` (JSON writes NaN and Infinity so).
 */
export function historyProblem(value: unknown): string | undefined {
  if (!Array.isArray(value)) return "'history' is not a list";
  const numberOrNull = (v: unknown) => v === null || (typeof v === "number" && Number.isFinite(v));
  for (const [i, record] of value.entries()) {
    if (
      typeof record !== "object" || record === null || record.epoch !== i + 1 ||
      EPOCH_NUMBERS.some((key) => record[key] !== undefined && !numberOrNull(record[key])) ||
      record.trainLoss === undefined || record.valAccuracy === undefined
    ) {
      return `history entry ${i} is not epoch ${i + 1} with its numbers`;
    }
  }
  return undefined;
}

/** Hyper-parameters of {@link TorchAdam}. */
export interface AdamOptions {
  learningRate?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

/** Serialisable optimiser state: step count and both moments, per variable, in order. */
export interface AdamState {
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

/**
 * Adam exactly as PyTorch computes it: bias corrections in double precision from the step count,
 * `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`. Its whole state is the step count and the
 * moments, so a run resumed from {@link TorchAdam.getState} continues bit for bit.
 *
 * On wasm (the default backend) the update runs as one fused loop per variable over the backend's
 * heap, with the moments in host memory: one pass instead of a dozen tensor ops, and no
 * tensor-sized temporaries inside the backend (VGG's 103M-weight head would not fit the wasm heap
 * otherwise). On every other backend (webgpu, native, cpu) the moments are tensors on that
 * backend and the update is a handful of tensor ops per variable: nothing crosses to the host.
 * On the native backend with digitsum's kernel library loaded, those ops run as one native op per
 * variable with the same float32 roundings ({@link nativeTorchAdam}).
 */
export class TorchAdam {
  /** Current learning rate (a schedule may change it between steps). */
  learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  step = 0;
  /** Moments on the host (wasm), or `undefined` when they live on the backend. */
  #host?: { m: Float32Array[]; v: Float32Array[] };
  /** Moments as backend tensors (every backend but wasm). */
  #device?: { m: tf.Tensor[]; v: tf.Tensor[] };

  /** @param variables the trainable variables, in a fixed order. */
  constructor(readonly variables: tf.Variable[], options: AdamOptions = {}) {
    this.learningRate = options.learningRate ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.#setMoments(
      variables.map((v) => new Float32Array(v.size)),
      variables.map((v) => new Float32Array(v.size)),
    );
  }

  /** Where the moments live: `host` (the fused wasm update) or `device` (tensor ops). */
  get placement(): "host" | "device" {
    return this.#host ? "host" : "device";
  }

  #setMoments(m: Float32Array[], v: Float32Array[]): void {
    this.dispose();
    if (wasmHeap()) {
      this.#host = { m, v };
    } else {
      const upload = (a: Float32Array, i: number) =>
        tf.keep(tf.tensor(a, this.variables[i].shape, "float32"));
      this.#device = { m: m.map(upload), v: v.map(upload) };
    }
  }

  /** Apply one update; `grads[i]` belongs to `variables[i]`. Does not dispose `grads`. */
  apply(grads: tf.Tensor[]): void {
    this.step += 1;
    const { beta1, beta2, epsilon } = this;
    const stepSize = this.learningRate / (1 - Math.pow(beta1, this.step));
    const sqrtBc2 = Math.sqrt(1 - Math.pow(beta2, this.step));
    const c1 = 1 - beta1;
    const c2 = 1 - beta2;
    const device = this.#device;
    if (device && nativeAdamAvailable()) {
      // One native op per variable, the same float32 roundings as the tensor ops below.
      const hyper = tf.tensor1d([beta1, c1, beta2, c2, sqrtBc2, epsilon, stepSize], "float32");
      this.variables.forEach((variable, i) => {
        const [p, m, v] = nativeTorchAdam(variable, grads[i], device.m[i], device.v[i], hyper);
        variable.assign(p);
        tf.dispose([p, device.m[i], device.v[i]]);
        device.m[i] = m;
        device.v[i] = v;
      });
      hyper.dispose();
      return;
    }
    if (device) {
      tf.tidy(() => {
        this.variables.forEach((variable, i) => {
          const g = grads[i];
          const m = device.m[i].mul(beta1).add(g.mul(c1));
          const v = device.v[i].mul(beta2).add(g.square().mul(c2));
          variable.assign(variable.sub(m.div(v.sqrt().div(sqrtBc2).add(epsilon)).mul(stepSize)));
          device.m[i].dispose();
          device.v[i].dispose();
          device.m[i] = tf.keep(m);
          device.v[i] = tf.keep(v);
        });
      });
      return;
    }
    const host = this.#host!;
    const heap = wasmHeap();
    if (!heap) throw new Error("TorchAdam: built on the wasm backend, which is no longer active");
    this.variables.forEach((variable, i) => {
      const m = host.m[i];
      const v = host.v[i];
      const n = variable.size;
      // Read and write the backend's heap directly (no copies).
      const output = heap.backend.makeOutput(variable.shape, "float32");
      const p = heap.f32(variable.dataId, n);
      const g = heap.f32(grads[i].dataId, n);
      const out = heap.f32(output.dataId, n);
      for (let j = 0; j < n; j++) {
        const gj = g[j];
        m[j] = beta1 * m[j] + c1 * gj;
        v[j] = beta2 * v[j] + c2 * gj * gj;
        out[j] = p[j] - stepSize * m[j] / (Math.sqrt(v[j]) / sqrtBc2 + epsilon);
      }
      const next = tf.engine().makeTensorFromTensorInfo(output);
      variable.assign(next);
      next.dispose();
    });
  }

  /** Copy of the state (read asynchronously: the moments may live on a GPU). */
  async getState(): Promise<AdamState> {
    if (this.#host) {
      return {
        step: this.step,
        m: this.#host.m.map((a) => a.slice()),
        v: this.#host.v.map((a) => a.slice()),
      };
    }
    const read = (ts: tf.Tensor[]) =>
      Promise.all(ts.map(async (t) => (await t.data() as Float32Array).slice()));
    return { step: this.step, m: await read(this.#device!.m), v: await read(this.#device!.v) };
  }

  /** Restore a state from {@link getState}; sizes must match the variables. */
  setState(state: AdamState): void {
    if (state.m.length !== this.variables.length || state.v.length !== this.variables.length) {
      throw new Error(
        `Optimizer state has ${state.m.length} moments, the model has ${this.variables.length} variables`,
      );
    }
    this.variables.forEach((p, i) => {
      if (state.m[i].length !== p.size || state.v[i].length !== p.size) {
        throw new Error(`Optimizer state does not match variable ${p.name} of shape [${p.shape}]`);
      }
    });
    this.step = state.step;
    this.#setMoments(state.m.map((a) => a.slice()), state.v.map((a) => a.slice()));
  }

  /** Release the moments. */
  dispose(): void {
    if (this.#device) tf.dispose([...this.#device.m, ...this.#device.v]);
    this.#host = undefined;
    this.#device = undefined;
  }
}

/** What the wasm backend offers for direct heap access (not in tfjs' public types). */
interface WasmHeapBackend {
  dataIdMap: { get(dataId: unknown): { memoryOffset: number } };
  wasm: { HEAPU8: Uint8Array; wasmMemory?: WebAssembly.Memory };
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
}

/**
 * Float32 views of tensors on the wasm heap, or `undefined` on other backends. A view stays valid
 * until the next allocation, so take every view after the last `makeOutput`.
 */
function wasmHeap():
  | { backend: WasmHeapBackend; f32(dataId: unknown, size: number): Float32Array }
  | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const backend = tf.backend() as unknown as WasmHeapBackend;
  return {
    backend,
    f32(dataId, size) {
      const buffer = backend.wasm.wasmMemory?.buffer ?? backend.wasm.HEAPU8.buffer;
      return new Float32Array(buffer, backend.dataIdMap.get(dataId).memoryOffset, size);
    },
  };
}

/** The trainable variables of a model, in layer order. */
export function trainableVariables(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/** Flatten a model output to what the study compares: [b] for regressors, [b, 37] for logits. */
function squeezeOutput(output: tf.Tensor, task: Task): tf.Tensor {
  return task === "regression" ? output.reshape([-1]) : output;
}

/** The study's loss: MSE for regression, cross entropy on logits for classification. */
export function lossFor(output: tf.Tensor, labels: tf.Tensor1D, task: Task): tf.Scalar {
  return tf.tidy(() => {
    const out = squeezeOutput(output, task);
    if (task === "regression") return out.sub(labels).square().mean() as tf.Scalar;
    const numClasses = out.shape[1]!;
    const oneHot = tf.oneHot(labels.toInt(), numClasses);
    return tf.losses.softmaxCrossEntropy(oneHot, out as tf.Tensor2D) as tf.Scalar;
  });
}

/** Round half to even, as `torch.round` does (24.5 -> 24, 25.5 -> 26). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Turn raw outputs into predicted sums: rounded (regression) or argmax (classification). */
export function predictionsFromOutput(values: Float32Array, batch: number, task: Task): Int32Array {
  const preds = new Int32Array(batch);
  if (task === "regression") {
    for (let i = 0; i < batch; i++) preds[i] = roundHalfEven(values[i]);
    return preds;
  }
  const k = values.length / batch;
  for (let i = 0; i < batch; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (values[i * k + j] > values[i * k + best]) best = j;
    preds[i] = best;
  }
  return preds;
}

/** Count predictions equal to labels. */
export function countCorrect(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) correct++;
  return correct;
}

/** Predicted sums for one batch (inference mode). Reads asynchronously: works on every backend. */
export async function predictBatch(
  model: tf.LayersModel,
  x: tf.Tensor4D,
  task: Task,
): Promise<Int32Array> {
  const out = tf.tidy(() => squeezeOutput(model.apply(x, { training: false }) as tf.Tensor, task));
  try {
    return predictionsFromOutput(await out.data() as Float32Array, x.shape[0], task);
  } finally {
    out.dispose();
  }
}

/** Accuracy of a model over a whole loader. */
export interface AccuracyResult {
  correct: number;
  total: number;
  /** Overall accuracy in percent: total correct / total images (the study's "Overall Accuracy"). */
  accuracy: number;
  /** Mean over batches of each batch's % correct (the study's per-epoch "Val Accuracy"). */
  batchMeanAccuracy: number;
  /** Predicted sum per image, in loader order. */
  predictions: Int32Array;
  /** True sum per image, in loader order. */
  labels: Int32Array;
}

/** Options of {@linkcode evaluateAccuracy}. */
export interface EvaluateOptions {
  /**
   * Predicts a batch's sums instead of {@linkcode predictBatch} (e.g. SumNet's read-out, which
   * predicts the sum and reads the digits in one forward pass). It must not dispose `x`.
   */
  predict?: (x: tf.Tensor4D) => Promise<Int32Array>;
}

/** Evaluate a model on every batch of a loader. */
export async function evaluateAccuracy(
  model: tf.LayersModel,
  loader: BatchSource,
  task: Task,
  options: EvaluateOptions = {},
): Promise<AccuracyResult> {
  const predictions = new Int32Array(loader.size);
  const labels = new Int32Array(loader.size);
  let offset = 0;
  let batchPercentSum = 0;
  let batches = 0;
  for (const { x, y } of loader.batches()) {
    const preds = options.predict ? await options.predict(x) : await predictBatch(model, x, task);
    const ys = await y.data();
    predictions.set(preds, offset);
    for (let i = 0; i < ys.length; i++) labels[offset + i] = Math.round(ys[i]);
    batchPercentSum += countCorrect(preds, ys) * 100 / ys.length;
    batches += 1;
    offset += ys.length;
    x.dispose();
    y.dispose();
  }
  const correct = countCorrect(predictions.subarray(0, offset), labels.subarray(0, offset));
  return {
    correct,
    total: offset,
    accuracy: offset === 0 ? 0 : (correct / offset) * 100,
    batchMeanAccuracy: batches === 0 ? 0 : batchPercentSum / batches,
    predictions: predictions.subarray(0, offset),
    labels: labels.subarray(0, offset),
  };
}

/** The study's per-epoch line. */
export function formatEpochLine(record: EpochRecord, epochs: number): string {
  return `Epoch ${record.epoch}/${epochs}, Train Loss: ${record.trainLoss.toFixed(4)}, ` +
    `Val Accuracy: ${record.valAccuracy.toFixed(4)}`;
}

/** Options of {@link trainModel}. */
export interface TrainOptions {
  task: Task;
  /** Total epochs of the run (the study: 15). */
  epochs: number;
  /** Adam learning rate (the study: 1e-3). Ignored when `optimizer` is given. */
  learningRate?: number;
  /** An existing optimiser (to resume); by default a fresh {@link TorchAdam}. */
  optimizer?: TorchAdam;
  /** Epochs already done (to resume); training starts at epoch `startEpoch + 1`. */
  startEpoch?: number;
  /** History of the epochs already done (to resume). */
  history?: EpochRecord[];
  /** Where the per-epoch line goes (default `console.log`; `null` prints nothing). */
  log?: ((line: string) => void) | null;
  /** Called after every training batch. */
  onBatchEnd?: (progress: BatchProgress) => void | Promise<void>;
  /** Called after every epoch (e.g. to checkpoint); awaited before the next epoch. */
  onEpochEnd?: (record: EpochRecord, optimizer: TorchAdam) => void | Promise<void>;
  /** Checked between batches; when it returns true the run stops after the current epoch. */
  shouldStop?: () => boolean;
  /**
   * Awaited after every training batch; when it gives true the run stops at once, part-way
   * through the epoch, and {@link TrainResult.unfinished} says where (pass it back as `resume`,
   * with the same model, `optimizer`, `startEpoch` and `history`, to continue exactly there).
   */
  stopAfterBatch?: () => boolean | Promise<boolean>;
  /** An epoch that `stopAfterBatch` stopped part-way: training continues with its next batch. */
  resume?: UnfinishedEpoch;
  /** Replaces the study's loss for `task` (e.g. a per-cell pretraining loss); gets the batch's `y`. */
  loss?: (output: tf.Tensor, labels: tf.Tensor1D) => tf.Scalar;
  /** Learning rate for each training batch (a schedule); `epoch` 1-based, `batch` 0-based. */
  learningRateAt?: (epoch: number, batch: number) => number;
  /**
   * Data augmentation: replaces the images of every training batch (not validation); may read
   * them asynchronously. The batch's original images are disposed when a new tensor comes back.
   */
  augment?: (x: tf.Tensor4D) => tf.Tensor4D | Promise<tf.Tensor4D>;
  /** Replaces the per-epoch validation metric (default: the study's batch-mean accuracy on `val`). */
  validate?: (model: tf.LayersModel) => number | Promise<number>;
}

/** Where an epoch stopped part-way (see `stopAfterBatch` in {@link TrainOptions}). */
export interface UnfinishedEpoch {
  /** 1-based epoch number. */
  epoch: number;
  /** Training batches of the epoch already done. */
  batches: number;
  /** Sum of their losses. */
  lossSum: number;
  /** Images they held. */
  seen: number;
  /** Wall seconds spent on them. */
  seconds: number;
}

/** What {@link trainModel} returns. */
export interface TrainResult {
  history: EpochRecord[];
  optimizer: TorchAdam;
  /** True when `shouldStop` or `stopAfterBatch` ended the run early. */
  stopped: boolean;
  /** Set when `stopAfterBatch` stopped the run part-way through an epoch. */
  unfinished?: UnfinishedEpoch;
}

/** Train a model with the study's procedure, printing one line per epoch. */
// Long because: the study's loop as one readable unit: batches, loss, Adam step, progress, stop and resume points, validation, the epoch line.
export async function trainModel(
  model: tf.LayersModel,
  loaders: { train: BatchSource; val: BatchSource },
  options: TrainOptions,
): Promise<TrainResult> {
  const { task, epochs } = options;
  const log = options.log === undefined ? console.log : options.log;
  const variables = trainableVariables(model);
  const optimizer = options.optimizer ??
    new TorchAdam(variables, { learningRate: options.learningRate ?? 1e-3 });
  const history = [...(options.history ?? [])];
  const firstEpoch = (options.startEpoch ?? 0) + 1;
  const resume = options.resume;
  if (resume && resume.epoch !== firstEpoch) {
    throw new Error(
      `trainModel(): cannot resume epoch ${resume.epoch} with startEpoch ${firstEpoch - 1}`,
    );
  }
  let stopped = false;
  for (let epoch = firstEpoch; epoch <= epochs; epoch++) {
    const partial = resume?.epoch === epoch ? resume : undefined;
    const start = performance.now() - (partial?.seconds ?? 0) * 1000;
    let lossSum = partial?.lossSum ?? 0;
    let seen = partial?.seen ?? 0;
    for (const batch of loaders.train.batches({ epoch })) {
      const { y, index } = batch;
      if (partial && index < partial.batches) {
        tf.dispose([batch.x, y]); // done before the stop
        continue;
      }
      const x = options.augment ? await options.augment(batch.x) : batch.x;
      if (x !== batch.x) batch.x.dispose();
      if (options.learningRateAt) optimizer.learningRate = options.learningRateAt(epoch, index);
      const { value, grads } = tf.variableGrads(() => {
        const output = model.apply(x, { training: true }) as tf.Tensor;
        return options.loss ? options.loss(output, y) : lossFor(output, y, task);
      }, variables);
      optimizer.apply(variables.map((v) => grads[v.name]));
      const loss = (await value.data())[0];
      tf.dispose([value, grads, x, y]);
      lossSum += loss;
      seen += x.shape[0];
      await options.onBatchEnd?.({
        epoch,
        epochs,
        batch: index + 1,
        numBatches: loaders.train.numBatches,
        loss,
        elapsed: (performance.now() - start) / 1000,
      });
      if (index + 1 < loaders.train.numBatches && await options.stopAfterBatch?.()) {
        const seconds = (performance.now() - start) / 1000;
        return {
          history,
          optimizer,
          stopped: true,
          unfinished: { epoch, batches: index + 1, lossSum, seen, seconds },
        };
      }
    }
    const trainSeconds = (performance.now() - start) / 1000;
    const valAccuracy = options.validate
      ? await options.validate(model)
      : (await evaluateAccuracy(model, loaders.val, task)).batchMeanAccuracy;
    const record: EpochRecord = {
      epoch,
      trainLoss: lossSum / loaders.train.numBatches,
      valAccuracy,
      seconds: (performance.now() - start) / 1000,
      trainImagesPerSecond: seen / trainSeconds,
    };
    history.push(record);
    log?.(formatEpochLine(record, epochs));
    await options.onEpochEnd?.(record, optimizer);
    if (options.shouldStop?.() || (epoch < epochs && await options.stopAfterBatch?.())) {
      stopped = epoch < epochs;
      break;
    }
  }
  return { history, optimizer, stopped };
}

/** The study's "Overall Accuracy of Regressor on Validation Split: 11.77%" line. */
export function formatOverallLine(noun: string, split: string, accuracy: number): string {
  return `Overall Accuracy of ${noun} on ${split} Split: ${accuracy.toFixed(2)}%`;
}
