/**
 * Training kernels for the native `tensorflow` backend (`@tensorflow/tfjs-node`) where its own
 * path is slow: TensorFlow has fused gradient ops that tfjs-node does not use.
 *
 * - `Relu`'s gradient: tfjs computes `dy * step(x)`, and tfjs-node builds `Step` out of `IsNan`,
 *   `Greater`, `Fill`, `Select` and a second `Select`: about 340 ms of a 714 ms training step of the
 *   study's CNN (batch 64, 2 cores). TensorFlow's own `ReluGrad` does it in one pass.
 *
 * Gradients are registered for every backend at once in tfjs, so the `Relu` gradient registered
 * here calls the native kernel only while the `tensorflow` backend is active and a float32 input is
 * given; everything else goes to tfjs' original gradient. `tests/native_kernels_test.ts` checks the
 * results against the `cpu` backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** The kernel name this module registers on the `tensorflow` backend. */
export const NATIVE_RELU_GRAD = "DigitsumReluGrad";

/** The part of tfjs-node's backend used here. */
interface NodeBackend {
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number };
  executeSingleOutput(
    name: string,
    attrs: Array<{ name: string; type: number; value: unknown }>,
    inputs: tf.TensorInfo[],
  ): tf.TensorInfo;
}

let registered = false;

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
  if (registered) return [NATIVE_RELU_GRAD];
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
  const original = tf.getGradient("Relu");
  if (original == null) throw new Error("tfjs has no gradient for Relu to wrap");
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
      return original.gradFunc(dy, saved, attrs);
    },
  });
  registered = true;
  return [NATIVE_RELU_GRAD];
}
