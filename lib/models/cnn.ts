/**
 * The study's two CNNs, layer for layer as the PyTorch study (NHWC here, NCHW there), with
 * PyTorch's default initialisation ({@link torchInit}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { IMAGE_HEIGHT, IMAGE_WIDTH, NUM_SUMS } from "../constants.ts";
import type { BuildOptions } from "./registry.ts";
import { torchDense, torchInit } from "./torch_init.ts";

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
