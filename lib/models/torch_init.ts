/**
 * PyTorch's default initialisation for digitsum's layers: weights and biases uniform in
 * (-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels x kernel area (or in_features), as
 * `nn.Conv2d` and `nn.Linear` draw them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** PyTorch's default init bound for a layer with this fan-in. */
export function torchInit(fanIn: number): ReturnType<typeof tf.initializers.randomUniform> {
  const bound = 1 / Math.sqrt(fanIn);
  return tf.initializers.randomUniform({ minval: -bound, maxval: bound });
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
