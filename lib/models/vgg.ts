/**
 * The study's third model, `VGGRegressor`: a trainable 1x1 Conv2D (1 -> 3 channels, no bias),
 * torchvision's VGG11 `features` with ImageNet weights (IMAGENET1K_V1), frozen, PyTorch's
 * `AdaptiveAvgPool2d((7, 7))`, a flatten in PyTorch's channel-major (C, H, W) order and a new
 * trainable head 25088 -> 4096 -> 256 -> 1 with ReLU and Dropout(0.5).
 *
 * The VGG11 weights come from a local safetensors file holding torchvision's `features.*`
 * tensors (PyTorch layout: conv weights OIHW), see {@link loadVgg11Features}. tfjs is NHWC:
 * kernels are transposed to HWIO on load.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { ModelUnavailableError } from "./registry.ts";
import { torchInit } from "./torch_init.ts";
import { IMAGE_HEIGHT, IMAGE_WIDTH } from "../constants.ts";
import { readSafetensors, type SafeTensor } from "../io/safetensors.ts";

/** VGG11's `features` layout ("M" = MaxPool 2x2 stride 2), as torchvision's config "A". */
export const VGG11_CONFIG: readonly (number | "M")[] = [
  64,
  "M",
  128,
  "M",
  256,
  256,
  "M",
  512,
  512,
  "M",
  512,
  512,
  "M",
];
/** Output size of the adaptive average pool (PyTorch's `AdaptiveAvgPool2d((7, 7))`). */
export const VGG_POOL_SIZE = 7;
/** Channels leaving VGG11's features. */
export const VGG_FEATURE_CHANNELS = 512;
/** Width of the flattened pooled features: 512 x 7 x 7. */
export const VGG_FLAT_FEATURES = VGG_FEATURE_CHANNELS * VGG_POOL_SIZE * VGG_POOL_SIZE; // 25,088
/** Hidden widths of the trainable head. */
export const VGG_HEAD_UNITS = [4096, 256] as const;
/** Dropout rate of the head. */
export const VGG_DROPOUT = 0.5;
/** Environment variable that overrides the weights path. */
export const VGG_WEIGHTS_ENV = "DIGITSUM_VGG_WEIGHTS";
/** Default location of the VGG11 weights, relative to the working directory. */
export const DEFAULT_VGG_WEIGHTS_PATH = "data/weights/vgg11.safetensors";
/** The command that installs the weights. */
export const VGG_WEIGHTS_COMMAND = "deno task weights vgg11";
/** The two-line PyTorch export that writes the same file from torchvision. */
export const VGG_TORCH_EXPORT = [
  "import torch, torchvision; from safetensors.torch import save_file",
  'm = torchvision.models.vgg11(weights="IMAGENET1K_V1"); ' +
  'save_file({k: v for k, v in m.state_dict().items() if k.startswith("features.")}, ' +
  '"vgg11.safetensors")',
] as const;

/** One 3x3 convolution of VGG11's features, with its torchvision state-dict index. */
export interface VggConvSpec {
  /** Index in torchvision's `features` Sequential (0, 3, 6, 8, 11, 13, 16, 18). */
  index: number;
  inChannels: number;
  outChannels: number;
}

/** One module of the features stack: a conv (+ ReLU) or a max pool, with its torch index. */
type FeatureStep = { kind: "conv"; spec: VggConvSpec } | { kind: "pool"; index: number };

/** The features stack with torchvision's module indices (a conv is followed by its ReLU). */
function featureSteps(): FeatureStep[] {
  const steps: FeatureStep[] = [];
  let index = 0;
  let channels = 3;
  for (const item of VGG11_CONFIG) {
    if (item === "M") {
      steps.push({ kind: "pool", index });
      index += 1;
    } else {
      steps.push({ kind: "conv", spec: { index, inChannels: channels, outChannels: item } });
      channels = item;
      index += 2;
    }
  }
  return steps;
}

/** VGG11's eight 3x3 convolutions, in order. */
export const VGG11_CONVS: readonly VggConvSpec[] = featureSteps().flatMap((step) =>
  step.kind === "conv" ? [step.spec] : []
);

/** The state-dict shape of every tensor VGG11's features need (PyTorch layout). */
export const VGG11_FEATURE_SHAPES: Readonly<Record<string, readonly number[]>> = Object
  .fromEntries(
    VGG11_CONVS.flatMap(({ index, inChannels, outChannels }) => [
      [`features.${index}.weight`, [outChannels, inChannels, 3, 3]],
      [`features.${index}.bias`, [outChannels]],
    ]),
  );

/** torchvision's state-dict names of VGG11's features (weight and bias of 8 convolutions). */
export const VGG11_FEATURE_KEYS: readonly string[] = Object.keys(VGG11_FEATURE_SHAPES);

/** Parameters in VGG11's features: 9,220,480. */
export const VGG11_FEATURE_PARAMS = Object.values(VGG11_FEATURE_SHAPES).reduce(
  (sum, shape) => sum + shape.reduce((p, d) => p * d, 1),
  0,
);

/** Trainable parameters of the regressor: 1x1 conv + head = 103,813,636. */
export const VGG_TRAINABLE_PARAMS = 3 + (VGG_FLAT_FEATURES * 4096 + 4096) + (4096 * 256 + 256) +
  (256 + 1);

/** The weights path to use: the option, else env `DIGITSUM_VGG_WEIGHTS`, else the default. */
export function vggWeightsPath(path?: string): string {
  if (path) return path;
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get(VGG_WEIGHTS_ENV);
  } catch {
    // No env permission: use the default.
  }
  return fromEnv || DEFAULT_VGG_WEIGHTS_PATH;
}

/**
 * The message for a missing weights file: where the file goes and the ways to get it.
 *
 * @param path The path that was looked for.
 */
export function missingWeightsMessage(path: string): string {
  return [
    `Cannot read ${path}: VGG11 ImageNet weights not found.`,
    `The VGG regressor needs torchvision's VGG11 (IMAGENET1K_V1) features in safetensors form at ` +
    `${path} (default ${DEFAULT_VGG_WEIGHTS_PATH}, or set ${VGG_WEIGHTS_ENV}). To get it:`,
    `  - ${VGG_WEIGHTS_COMMAND}   (downloads timm/vgg11.tv_in1k from Hugging Face, checks its SHA-256)`,
    `  - ${VGG_WEIGHTS_COMMAND} --from FILE   (checks and installs a safetensors file you already have)`,
    `  - or export it with PyTorch + torchvision + safetensors, then use --from:`,
    `      ${VGG_TORCH_EXPORT[0]}`,
    `      ${VGG_TORCH_EXPORT[1]}`,
  ].join("\n");
}

/**
 * Check that `tensors` hold exactly VGG11's features: every name of
 * {@link VGG11_FEATURE_KEYS} with its PyTorch shape, finite values, and no other `features.*`
 * tensor (which would mean another network, e.g. VGG11-BN or VGG13). Other keys
 * (`classifier.*`, timm's `pre_logits.*`, `head.*`) are ignored.
 *
 * @param tensors Tensors as read by `readSafetensors`.
 * @param name File name for errors.
 * @returns The 16 feature tensors, keyed by state-dict name, in {@link VGG11_FEATURE_KEYS} order.
 */
export function validateVgg11Features(
  tensors: Map<string, SafeTensor>,
  name: string,
): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const key of VGG11_FEATURE_KEYS) {
    const tensor = tensors.get(key);
    const expected = VGG11_FEATURE_SHAPES[key];
    if (!tensor) {
      throw new Error(
        `Cannot read ${name}: missing tensor '${key}' (expected shape [${expected.join(", ")}]); ` +
          `not torchvision VGG11 features`,
      );
    }
    if (
      tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])
    ) {
      throw new Error(
        `Cannot read ${name}: tensor '${key}' has shape [${tensor.shape.join(", ")}], ` +
          `expected [${expected.join(", ")}]`,
      );
    }
    const bad = tensor.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(`Cannot read ${name}: tensor '${key}' holds ${tensor.data[bad]} at ${bad}`);
    }
    out.set(key, tensor);
  }
  const extra = [...tensors.keys()].filter((key) =>
    key.startsWith("features.") && !(key in VGG11_FEATURE_SHAPES)
  );
  if (extra.length > 0) {
    throw new Error(
      `Cannot read ${name}: unexpected tensor '${extra[0]}' (${extra.length} extra features.* ` +
        `tensors): not plain VGG11 (VGG11-BN or another depth?)`,
    );
  }
  return out;
}

/**
 * Read and validate VGG11 feature weights from a safetensors file (only the `features.*`
 * tensors are read; a full torchvision or timm checkpoint is fine).
 *
 * @param path The safetensors file.
 * @returns The 16 feature tensors in PyTorch layout, keyed by state-dict name.
 */
export async function loadVgg11Features(path: string): Promise<Map<string, SafeTensor>> {
  let tensors: Map<string, SafeTensor>;
  try {
    tensors = await readSafetensors(path, { include: (key) => key.startsWith("features.") });
  } catch (error) {
    if ((error as Error).cause instanceof Deno.errors.NotFound) {
      throw new ModelUnavailableError(missingWeightsMessage(path), { cause: error });
    }
    throw error;
  }
  return validateVgg11Features(tensors, path);
}

/**
 * Transpose a PyTorch conv weight (OIHW) to tfjs' HWIO layout.
 *
 * @param data Weight values, OIHW row-major.
 * @param shape `[out, in, kh, kw]`.
 * @returns The same values, HWIO row-major.
 */
export function oihwToHwio(data: Float32Array, shape: readonly number[]): Float32Array {
  const [o, i, h, w] = shape;
  const out = new Float32Array(data.length);
  for (let oc = 0; oc < o; oc++) {
    for (let ic = 0; ic < i; ic++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          out[((y * w + x) * i + ic) * o + oc] = data[((oc * i + ic) * h + y) * w + x];
        }
      }
    }
  }
  return out;
}

/**
 * PyTorch's adaptive pooling bins: output cell `k` of `outSize` averages input rows
 * `floor(k * inSize / outSize)` .. `ceil((k + 1) * inSize / outSize) - 1`.
 *
 * @param inSize Input length (rows or columns).
 * @param outSize Output length.
 * @returns `[start, end)` per output cell.
 */
export function adaptivePoolBins(inSize: number, outSize: number): Array<[number, number]> {
  return Array.from({ length: outSize }, (_, k) => [
    Math.floor((k * inSize) / outSize),
    Math.ceil(((k + 1) * inSize) / outSize),
  ]);
}

/**
 * The averaging matrix of adaptive pooling from `[h, w]` to `[oh, ow]`: `[h * w, oh * ow]`,
 * entry `(y * w + x, i * ow + j)` = 1 / bin area when (y, x) lies in output cell (i, j)'s bin.
 */
function adaptivePoolMatrix(h: number, w: number, oh: number, ow: number): Float32Array {
  const rows = adaptivePoolBins(h, oh);
  const cols = adaptivePoolBins(w, ow);
  const matrix = new Float32Array(h * w * oh * ow);
  for (let i = 0; i < oh; i++) {
    const [y0, y1] = rows[i];
    for (let j = 0; j < ow; j++) {
      const [x0, x1] = cols[j];
      const weight = 1 / ((y1 - y0) * (x1 - x0));
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) matrix[(y * w + x) * oh * ow + i * ow + j] = weight;
      }
    }
  }
  return matrix;
}

/** Config of {@link AdaptiveAvgPool2d}. */
export interface AdaptiveAvgPool2dArgs {
  /** `[height, width]` of the output. */
  outputSize: [number, number];
  /** Layer name. */
  name?: string;
}

/**
 * PyTorch's `AdaptiveAvgPool2d` for NHWC tensors, exact for any input size: output cell (i, j)
 * averages the bin given by {@link adaptivePoolBins} on each axis. Computed as one matmul with
 * an averaging matrix (`[b * C, H * W] x [H * W, oh * ow]`), so it is differentiable and fast on
 * every backend. No parameters.
 */
export class AdaptiveAvgPool2d extends tf.layers.Layer {
  /** Class name used in serialised model configs. */
  static className = "AdaptiveAvgPool2d";
  /** Output `[height, width]`. */
  readonly outputSize: [number, number];

  /** @param args Output size and optional name. */
  constructor(args: AdaptiveAvgPool2dArgs) {
    super({ name: args.name });
    const [oh, ow] = args.outputSize ?? [];
    if (!Number.isInteger(oh) || !Number.isInteger(ow) || oh < 1 || ow < 1) {
      throw new Error(`AdaptiveAvgPool2d: invalid outputSize ${JSON.stringify(args.outputSize)}`);
    }
    this.outputSize = [oh, ow];
  }

  /** `[b, h, w, c]` -> `[b, oh, ow, c]`. */
  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0], this.outputSize[0], this.outputSize[1], shape[3]];
  }

  /** Pool a `[b, h, w, c]` tensor. */
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
      const [b, h, w, c] = x.shape;
      const [oh, ow] = this.outputSize;
      if (h === oh && w === ow) return x.clone();
      const matrix = tf.tensor2d(adaptivePoolMatrix(h, w, oh, ow), [h * w, oh * ow]);
      const columns = x.reshape([b, h * w, c]).transpose([0, 2, 1]).reshape([b * c, h * w]);
      const pooled = tf.matMul(columns, matrix); // [b * c, oh * ow]
      return pooled.reshape([b, c, oh * ow]).transpose([0, 2, 1]).reshape([b, oh, ow, c]);
    });
  }

  /** Serialisable config (`outputSize` plus the base layer's). */
  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), outputSize: [...this.outputSize] };
  }
}

/** Config of {@link PooledDense}. */
export interface PooledDenseArgs {
  /** Output features. */
  units: number;
  /** `[height, width]` of the adaptive average pool before the product. */
  poolSize: [number, number];
  /** `relu` or none (`linear`). */
  activation?: "relu" | "linear";
  /** Layer name. */
  name?: string;
}

/**
 * PyTorch's `AdaptiveAvgPool2d(poolSize)`, the channel-major flatten and a `Linear` in one layer:
 * `[b, h, w, c]` -> `[b, units]`, with a kernel `[c * ph * pw, units]` in PyTorch's flatten order
 * (VGG's `head_fc1`: 25,088 x 4096) and a bias, both drawn as PyTorch's default init.
 *
 * The pool is linear, so pooling and the product fold into one: with `P` the `[h * w, ph * pw]`
 * averaging matrix, `flatten(pool(x)) @ W = x' @ W'` where `x'` is x in channel-major order and
 * `W'[c] = P @ W[c]`, `[c * h * w, units]`. When the input is smaller than the pool (VGG's 1 x 5
 * features of a 40 x 168 image, against 7 x 7 = 49 pool cells) this is the cheaper order: the
 * product over `c * h * w` = 2,560 features instead of 25,088, and `W'` and the kernel's gradient
 * come from one memory-bound pass each. Same function, same weights; float32 results differ only by
 * the order of the sums. Otherwise it pools, then multiplies.
 */
export class PooledDense extends tf.layers.Layer {
  /** Class name used in serialised model configs. */
  static className = "PooledDense";
  readonly units: number;
  readonly poolSize: [number, number];
  readonly activation: "relu" | "linear";
  #kernel?: ReturnType<tf.layers.Layer["addWeight"]>;
  #bias?: ReturnType<tf.layers.Layer["addWeight"]>;

  /** @param args Units, pool size, activation and optional name. */
  constructor(args: PooledDenseArgs) {
    super({ name: args.name });
    const [ph, pw] = args.poolSize ?? [];
    if (!Number.isInteger(ph) || !Number.isInteger(pw) || ph < 1 || pw < 1) {
      throw new Error(`PooledDense: invalid poolSize ${JSON.stringify(args.poolSize)}`);
    }
    if (!Number.isInteger(args.units) || args.units < 1) {
      throw new Error(`PooledDense: invalid units ${JSON.stringify(args.units)}`);
    }
    this.units = args.units;
    this.poolSize = [ph, pw];
    this.activation = args.activation ?? "linear";
  }

  /** Creates the kernel, then the bias (Dense's order, so a seed draws the same weights). */
  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const fanIn = (shape[3] as number) * this.poolSize[0] * this.poolSize[1];
    const init = torchInit(fanIn);
    this.#kernel = this.addWeight("kernel", [fanIn, this.units], "float32", init);
    this.#bias = this.addWeight("bias", [this.units], "float32", init);
    this.built = true;
  }

  /** `[b, h, w, c]` -> `[b, units]`. */
  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0], this.units];
  }

  /** Pool, flatten channel-major and multiply, in the cheaper of the two orders. */
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
      const [b, h, w, c] = x.shape;
      const [ph, pw] = this.poolSize;
      const kernel = this.#kernel!.read(); // [c * ph * pw, units]
      const columns = x.reshape([b, h * w, c]).transpose([0, 2, 1]); // [b, c, h * w]
      const pool = () => tf.tensor2d(adaptivePoolMatrix(h, w, ph, pw), [h * w, ph * pw]);
      let features: tf.Tensor2D; // [b, fan-in of the product]
      let weights: tf.Tensor2D; // [fan-in, units]
      if (h === ph && w === pw) {
        features = columns.reshape([b, c * h * w]);
        weights = kernel as tf.Tensor2D;
      } else if (h * w < ph * pw) {
        // W'[c] = P @ W[c]: [c, h * w, ph * pw] x [c, ph * pw, units] -> [c, h * w, units].
        const folded = tf.matMul(
          tf.tile(pool().expandDims(0), [c, 1, 1]),
          kernel.reshape([c, ph * pw, this.units]),
        );
        features = columns.reshape([b, c * h * w]);
        weights = folded.reshape([c * h * w, this.units]);
      } else {
        // [b * c, h * w] x [h * w, ph * pw]: the rows are already in channel-major order.
        features = tf.matMul(columns.reshape([b * c, h * w]), pool()).reshape([b, c * ph * pw]);
        weights = kernel as tf.Tensor2D;
      }
      return tf.fused.matMul({
        a: features,
        b: weights,
        bias: this.#bias!.read(),
        activation: this.activation,
      });
    });
  }

  /** Serialisable config (`units`, `poolSize`, `activation` plus the base layer's). */
  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      units: this.units,
      poolSize: [...this.poolSize],
      activation: this.activation,
    };
  }
}

let layersRegistered = false;

/** Register this module's custom layer classes with tfjs (idempotent). */
export function registerVggLayers(): void {
  if (layersRegistered) return;
  tf.serialization.registerClass(AdaptiveAvgPool2d);
  tf.serialization.registerClass(PooledDense);
  layersRegistered = true;
}

registerVggLayers();

/** Spatial size after VGG11's five 2x2 pools: `[floor(h / 32), floor(w / 32)]` (40x168 -> 1x5). */
export function vggFeatureSize(height: number, width: number): [number, number] {
  let [h, w] = [height, width];
  for (const item of VGG11_CONFIG) {
    if (item === "M") [h, w] = [Math.floor(h / 2), Math.floor(w / 2)];
  }
  return [h, w];
}

/** Options for {@link buildVggRegressor}. */
export interface VggRegressorOptions {
  /** Safetensors file with VGG11's features (default: env DIGITSUM_VGG_WEIGHTS, else data/weights/vgg11.safetensors). */
  weightsPath?: string;
  /** Input height (default 40); at least 32. */
  inputHeight?: number;
  /** Input width (default 168); at least 32. */
  inputWidth?: number;
}

/**
 * Build the VGG regressor with VGG11's ImageNet features (frozen) read from `weightsPath`.
 *
 * Layers (names): `rgb_adapter` (Conv2D 1->3 1x1, no bias, trainable), `features_0` ..
 * `features_20` (torchvision's module indices; conv layers have a fused ReLU; frozen),
 * `head_fc1` ({@link PooledDense}: the adaptive average pool to 7x7, the channel-major flatten
 * to 25,088 and Linear to 4096, ReLU), `head_dropout1`, `head_fc2` (256, ReLU), `head_dropout2`,
 * `head_out` (1). Input `[b, h, w, 1]` in [0, 1] (no ImageNet normalisation); output `[b, 1]`.
 *
 * @param options Weights path and input size.
 * @returns An uncompiled model; 103,813,636 trainable and 9,220,480 frozen parameters.
 */
// Long because: the network layer by layer as torchvision's VGG11 lists it, with its weights loaded in the same order.
export async function buildVggRegressor(
  options: VggRegressorOptions = {},
): Promise<tf.LayersModel> {
  registerVggLayers();
  const height = options.inputHeight ?? IMAGE_HEIGHT;
  const width = options.inputWidth ?? IMAGE_WIDTH;
  const [fh, fw] = vggFeatureSize(height, width);
  if (!Number.isInteger(height) || !Number.isInteger(width) || fh < 1 || fw < 1) {
    throw new Error(
      `Cannot build the VGG regressor for a ${height}x${width} input: VGG11's five 2x2 pools ` +
        `need at least 32x32`,
    );
  }
  const path = vggWeightsPath(options.weightsPath);
  const weights = await loadVgg11Features(path);

  const input = tf.input({ shape: [height, width, 1], name: "image" }); // [b, h, w, 1]
  let x = tf.layers.conv2d({
    name: "rgb_adapter",
    filters: 3,
    kernelSize: 1,
    useBias: false,
    kernelInitializer: torchInit(1),
  }).apply(input) as tf.SymbolicTensor; // [b, h, w, 3]
  const convLayers: Array<{ layer: tf.layers.Layer; spec: VggConvSpec }> = [];
  for (const step of featureSteps()) {
    if (step.kind === "pool") {
      x = tf.layers.maxPooling2d({
        name: `features_${step.index}`,
        poolSize: 2,
        strides: 2,
        padding: "valid",
      }).apply(x) as tf.SymbolicTensor;
    } else {
      const layer = tf.layers.conv2d({
        name: `features_${step.spec.index}`,
        filters: step.spec.outChannels,
        kernelSize: 3,
        padding: "same",
        activation: "relu",
        trainable: false,
        kernelInitializer: "zeros",
        biasInitializer: "zeros",
      });
      x = layer.apply(x) as tf.SymbolicTensor;
      convLayers.push({ layer, spec: step.spec });
    }
  } // [b, h/32, w/32, 512]
  // AdaptiveAvgPool2d((7, 7)), the channel-major flatten (25,088) and Linear(25088, 4096) + ReLU.
  x = new PooledDense({
    name: "head_fc1",
    units: VGG_HEAD_UNITS[0],
    poolSize: [VGG_POOL_SIZE, VGG_POOL_SIZE],
    activation: "relu",
  }).apply(x) as tf.SymbolicTensor; // [b, 4096]
  x = tf.layers.dropout({ name: "head_dropout1", rate: VGG_DROPOUT }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dense({
    name: "head_fc2",
    units: VGG_HEAD_UNITS[1],
    activation: "relu",
    kernelInitializer: torchInit(VGG_HEAD_UNITS[0]),
    biasInitializer: torchInit(VGG_HEAD_UNITS[0]),
  }).apply(x) as tf.SymbolicTensor; // [b, 256]
  x = tf.layers.dropout({ name: "head_dropout2", rate: VGG_DROPOUT }).apply(x) as tf.SymbolicTensor;
  const fanIn = VGG_HEAD_UNITS[1];
  const output = tf.layers.dense({
    name: "head_out",
    units: 1,
    kernelInitializer: torchInit(fanIn),
    biasInitializer: torchInit(fanIn),
  }).apply(x) as tf.SymbolicTensor; // [b, 1]
  const model = tf.model({ inputs: input, outputs: output, name: "vgg_regressor" });

  for (const { layer, spec } of convLayers) {
    const weight = weights.get(`features.${spec.index}.weight`)!;
    const bias = weights.get(`features.${spec.index}.bias`)!;
    const kernel = tf.tensor4d(oihwToHwio(weight.data, weight.shape), [
      3,
      3,
      spec.inChannels,
      spec.outChannels,
    ]);
    const biasTensor = tf.tensor1d(bias.data);
    layer.setWeights([kernel, biasTensor]);
    kernel.dispose();
    biasTensor.dispose();
    // Also mark the variables themselves frozen (the `trainable: false` arg only hides them from
    // `trainableWeights`), so that an optimizer over all trainable variables skips them too.
    layer.trainable = false;
  }
  return model;
}

/** Multiply-accumulates of one forward pass: `{features, head}` for an `h x w` input. */
export function vggMacs(
  height: number = IMAGE_HEIGHT,
  width: number = IMAGE_WIDTH,
): { features: number; head: number } {
  let [h, w] = [height, width];
  let features = h * w * 3; // the 1x1 adapter
  let channels = 3;
  for (const item of VGG11_CONFIG) {
    if (item === "M") {
      [h, w] = [Math.floor(h / 2), Math.floor(w / 2)];
    } else {
      features += h * w * 9 * channels * item;
      channels = item;
    }
  }
  const head = VGG_FLAT_FEATURES * 4096 + 4096 * 256 + 256;
  return { features, head };
}

/**
 * Images per second for a 40x168 input on the 2-core development machine (no GPU, shared with
 * other jobs, so idle numbers may be ~1.5x better). Measured: `wasm` forward 7.0 (batch 16),
 * `wasm` training 1.7 (batch 16: forward + backward 8.1 s, plus an in-place Adam update of the
 * 104M trainable weights, 1.2 s); `cpu` forward 0.3 (batch 2) and ~0.07 training (its Adam step
 * alone takes minutes); `tensorflow` (native TensorFlow 2.21, batch 64, `deno task bench`,
 * docs/measurements/bench_vgg_2026-12-02.txt, with `head_fc1` folded) training 19.9-23.1, forward
 * 45-56. `webgpu` is a guess.
 */
const IMAGES_PER_SECOND: Record<string, { forward: number; train: number }> = {
  wasm: { forward: 7, train: 1.5 },
  cpu: { forward: 0.3, train: 0.07 },
  tensorflow: { forward: 50, train: 21 },
  webgpu: { forward: 2, train: 0.5 },
};

/**
 * Largest training batch measured to fit the wasm backend's 4 GB heap in one forward + backward
 * pass (peak ~3.6 GB with the Adam moments as tensors on the heap). Batch 64 runs out of memory
 * even with the moments kept outside the heap: train with micro-batches and accumulate.
 */
export const VGG_WASM_MAX_BATCH = 16;

/**
 * A rough estimate of how long the VGG regressor takes for `images` images on a backend
 * (scaled by the input area when it is not 40x168). Meant for a warning before long CPU runs.
 *
 * @param images Number of images (e.g. epochs x training images).
 * @param backendName `wasm`, `cpu`, `tensorflow` or `webgpu` (unknown names use `cpu`).
 * @param options `training: true` (default) for train steps, `false` for forward passes only.
 * @returns Seconds.
 */
export function estimateVggSeconds(
  images: number,
  backendName: string,
  options: { training?: boolean; inputHeight?: number; inputWidth?: number } = {},
): number {
  const rates = IMAGES_PER_SECOND[backendName] ?? IMAGES_PER_SECOND.cpu;
  const rate = options.training === false ? rates.forward : rates.train;
  const reference = vggMacs();
  const actual = vggMacs(options.inputHeight, options.inputWidth);
  const scale = (actual.features + actual.head) / (reference.features + reference.head);
  return (images / rate) * scale;
}
