/**
 * Training kernels for the native `tensorflow` backend (`@tensorflow/tfjs-node`) where its own
 * path is slow: TensorFlow has fused gradient ops that tfjs-node does not use.
 *
 * - `Relu`'s gradient: tfjs computes `dy * step(x)`, and tfjs-node builds `Step` out of `IsNan`,
 *   `Greater`, `Fill`, `Select` and a second `Select`: about 340 ms of a 714 ms training step of the
 *   study's CNN (batch 64, 2 cores). TensorFlow's own `ReluGrad` does it in one pass.
 *
 * - digitsum's own TensorFlow kernels (lib/runtime/native/digitsum_kernels.cc, built by
 *   `deno task install-native` and loaded here into the process next to tfjs-node): the gradient
 *   of a 2 x 2, stride 2 max pool in one pass (TensorFlow's `MaxPoolGrad`: 50-57 ms of a 430 ms
 *   step for the study CNN's first pooling layer, ours about 24 ms), and {@link nativeTorchAdam},
 *   TorchAdam's update in one pass instead of thirteen ops (about 55 ms a step on `fc1`'s 6.9M
 *   weights), and relu(x + bias) in one pass for fused conv layers' inference (tfjs-node runs a
 *   broadcasting Add and a Relu). All give TensorFlow's results bit for bit.
 *
 * Gradients are registered for every backend at once in tfjs, so the gradients registered here
 * call the native kernels only while the `tensorflow` backend is active and float32 inputs are
 * given; everything else goes to tfjs' original gradient. `tests/native_test.ts` checks the
 * results against the `cpu` backend and against TensorFlow's own ops.
 *
 * @module
 */

import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";

/** The kernel names this module registers on the `tensorflow` backend. */
export const NATIVE_RELU_GRAD = "DigitsumReluGrad";
/** The 2 x 2, stride 2 max-pool gradient of digitsum's kernel library. */
export const NATIVE_MAX_POOL_GRAD = "DigitsumMaxPool2x2Grad";
/** TorchAdam's update as one op, from digitsum's kernel library. */
export const NATIVE_TORCH_ADAM = "DigitsumTorchAdam";
/** relu(x + bias) in one pass, from digitsum's kernel library (fused conv layers' inference). */
export const NATIVE_BIAS_ADD_RELU = "DigitsumBiasAddRelu";
/** How many ops the kernel library registers. */
const LIBRARY_OPS = 3;

/** The part of tfjs-node's backend used here. */
interface NodeBackend {
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number };
  executeSingleOutput(
    name: string,
    attrs: Array<{ name: string; type: number; value: unknown }>,
    inputs: tf.TensorInfo[],
  ): tf.TensorInfo;
  executeMultipleOutputs(
    name: string,
    attrs: Array<{ name: string; type: number; value: unknown }>,
    inputs: tf.TensorInfo[],
    numOutputs: number,
  ): tf.TensorInfo[];
}

const KERNEL_LIBRARY_SYMBOLS = {
  digitsum_kernels_registered: { parameters: [], result: "i32" },
  digitsum_kernels_set_threads: { parameters: ["i32"], result: "void" },
} as const;

let registered: string[] | undefined;
/** The loaded kernel library (kept open for the life of the process). */
let kernelLibrary: Deno.DynamicLibrary<typeof KERNEL_LIBRARY_SYMBOLS> | undefined;
/** Off only while `deno task bench --compare-native-kernels` times TensorFlow's own ops. */
let libraryEnabled = true;

/** Switches the use of digitsum's kernel library on or off (bench comparisons). */
export function setNativeKernelLibraryEnabled(enabled: boolean): void {
  libraryEnabled = enabled;
}

/**
 * Loads digitsum's kernel library, whose path `deno task install-native` wrote into the
 * package's `lib/digitsum-native.json`, after tfjs-node (and so TensorFlow) is loaded. Loading it
 * registers its ops with TensorFlow.
 *
 * @returns undefined when loaded, else why not (an install from before the library existed, a
 *   failed build, a missing file): training then runs on TensorFlow's own ops.
 */
export function loadNativeKernelLibrary(packageDir: string, threads: number): string | undefined {
  if (kernelLibrary) {
    kernelLibrary.symbols.digitsum_kernels_set_threads(threads);
    return undefined;
  }
  const info = join(packageDir, "lib", "digitsum-native.json");
  let path: unknown;
  try {
    path = (JSON.parse(Deno.readTextFileSync(info)) as { kernels?: unknown }).kernels;
  } catch (error) {
    return `cannot read ${info}: ${error instanceof Error ? error.message : error}`;
  }
  if (typeof path !== "string") {
    return `${info} names no kernel library (run \`deno task install-native\` again)`;
  }
  try {
    const library = Deno.dlopen(path, KERNEL_LIBRARY_SYMBOLS);
    const ops = library.symbols.digitsum_kernels_registered();
    if (ops !== LIBRARY_OPS) {
      library.close();
      return `${path} registered ${ops} of its ${LIBRARY_OPS} ops with TensorFlow`;
    }
    library.symbols.digitsum_kernels_set_threads(threads);
    kernelLibrary = library;
    return undefined;
  } catch (error) {
    return `cannot load ${path}: ${error instanceof Error ? error.message : error}`;
  }
}

/** Whether {@link nativeTorchAdam} can run now (library loaded, `tensorflow` backend active). */
export function nativeAdamAvailable(): boolean {
  return kernelLibrary !== undefined && libraryEnabled && tf.getBackend() === "tensorflow";
}

/**
 * One TorchAdam update of a float32 variable in one native op: returns `[p', m', v']`.
 * `hyper` is `[beta1, 1 - beta1, beta2, 1 - beta2, sqrt(bc2), eps, lr / bc1]` as a float32 tensor
 * (one per step, shared by every variable), or as numbers, each rounded to float32 as tfjs rounds
 * the scalars of the op-by-op update.
 */
export function nativeTorchAdam(
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  hyper: tf.Tensor1D | number[],
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const h = Array.isArray(hyper) ? tf.tensor1d(hyper, "float32") : hyper;
  try {
    return tf.engine().runKernel(NATIVE_TORCH_ADAM, { p, g, m, v, h }) as unknown as [
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
    ];
  } finally {
    if (h !== hyper) h.dispose();
  }
}

/**
 * Registers the native training kernels and the gradients that use them (idempotent).
 *
 * @returns the names of the kernels registered on the `tensorflow` backend
 * @throws Error when the `tensorflow` backend is not registered (tfjs-node not loaded)
 */
export function registerNativeTrainingKernels(): string[] {
  if (tf.findBackendFactory("tensorflow") == null) {
    throw new Error("registerNativeTrainingKernels: the tensorflow backend is not registered");
  }
  if (registered) return withLibrary(registered);
  tf.registerKernel({
    kernelName: NATIVE_RELU_GRAD,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const { dy, x } = inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
      const native = backend as unknown as NodeBackend;
      const floatType = {
        name: "T",
        type: native.binding.TF_ATTR_TYPE,
        value: native.binding.TF_FLOAT,
      };
      // ReluGrad(gradients, features) = gradients where features > 0, else 0.
      return native.executeSingleOutput("ReluGrad", [floatType], [dy, x]);
    },
  });
  registerLibraryOp(NATIVE_MAX_POOL_GRAD, ["x", "dy"]);
  registerLibraryOp(NATIVE_TORCH_ADAM, ["p", "g", "m", "v", "h"], 3);
  registerLibraryOp(NATIVE_BIAS_ADD_RELU, ["x", "bias"]);
  const originalRelu = tf.getGradient("Relu");
  if (originalRelu == null) throw new Error("tfjs has no gradient for Relu to wrap");
  tf.registerGradient({
    kernelName: "Relu",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const single = dy as tf.Tensor;
      if (tf.getBackend() === "tensorflow" && x.dtype === "float32" && single.dtype === "float32") {
        return {
          x: () => tf.engine().runKernel(NATIVE_RELU_GRAD, { dy: single, x }) as tf.Tensor,
        };
      }
      return originalRelu.gradFunc(dy, saved, attrs);
    },
  });
  const originalMaxPool = tf.getGradient("MaxPool");
  if (originalMaxPool == null) throw new Error("tfjs has no gradient for MaxPool to wrap");
  tf.registerGradient({
    kernelName: "MaxPool",
    inputsToSave: originalMaxPool.inputsToSave,
    outputsToSave: originalMaxPool.outputsToSave,
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const single = dy as tf.Tensor;
      if (
        kernelLibrary !== undefined && libraryEnabled && tf.getBackend() === "tensorflow" &&
        isPool2x2(attrs, x) && x.dtype === "float32" && single.dtype === "float32"
      ) {
        return {
          x: () => tf.engine().runKernel(NATIVE_MAX_POOL_GRAD, { x, dy: single }) as tf.Tensor,
        };
      }
      return originalMaxPool.gradFunc(dy, saved, attrs);
    },
  });
  // tfjs-node's FusedConv2D is a convolution, a broadcasting Add and a Relu: with a bias and a
  // ReLU (every conv layer's inference), the last two become one pass.
  const fusedConv = tf.getKernel("FusedConv2D", "tensorflow");
  if (fusedConv == null) throw new Error("tfjs-node has no FusedConv2D kernel to wrap");
  tf.unregisterKernel("FusedConv2D", "tensorflow");
  tf.registerKernel({
    ...fusedConv,
    kernelFunc: (args) => {
      const { bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo>;
      const attrs = args.attrs as { activation?: string };
      if (
        kernelLibrary === undefined || !libraryEnabled || attrs.activation !== "relu" ||
        bias == null || bias.shape.length !== 1 || bias.dtype !== "float32" ||
        preluActivationWeights != null
      ) {
        return fusedConv.kernelFunc(args);
      }
      const { x, filter } = args.inputs as Record<string, tf.TensorInfo>;
      const conv = fusedConv.kernelFunc({
        ...args,
        inputs: { x, filter },
        attrs: { ...args.attrs, activation: "linear" },
      }) as tf.Tensor;
      try {
        // The engine hands kernels the input tensors themselves (tfjs-node's own kernel adds them).
        const biasTensor = bias as tf.Tensor;
        return tf.engine().runKernel(NATIVE_BIAS_ADD_RELU, {
          x: conv,
          bias: biasTensor,
        }) as tf.Tensor;
      } finally {
        conv.dispose();
      }
    },
  });
  registered = [NATIVE_RELU_GRAD];
  return withLibrary(registered);
}

/**
 * Registers the kernel-library op `name` as a tfjs kernel on the `tensorflow` backend: the named
 * inputs, in this order, go to the TensorFlow op of the same name.
 */
function registerLibraryOp(name: string, inputNames: string[], outputs = 1): void {
  tf.registerKernel({
    kernelName: name,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const native = backend as unknown as NodeBackend;
      const ordered = inputNames.map((input) => (inputs as Record<string, tf.TensorInfo>)[input]);
      return outputs === 1
        ? native.executeSingleOutput(name, [], ordered)
        : native.executeMultipleOutputs(name, [], ordered, outputs);
    },
  });
}

/** The kernel names, with the library's when it is loaded. */
function withLibrary(names: string[]): string[] {
  return kernelLibrary
    ? [...names, NATIVE_MAX_POOL_GRAD, NATIVE_TORCH_ADAM, NATIVE_BIAS_ADD_RELU]
    : names;
}

/** A 2 x 2, stride 2 pool without padding over an NHWC input of even height and width. */
function isPool2x2(attrs: tf.NamedAttrMap, x: tf.Tensor): boolean {
  const pair = (value: unknown) => Array.isArray(value) ? value : [value, value];
  const [fh, fw] = pair(attrs.filterSize);
  const [sh, sw] = pair(attrs.strides);
  const [, height, width] = x.shape as number[];
  return x.rank === 4 && fh === 2 && fw === 2 && sh === 2 && sw === 2 &&
    (attrs.pad === "valid" || attrs.pad === "same") && attrs.dimRoundingMode == null &&
    height % 2 === 0 && width % 2 === 0;
}
