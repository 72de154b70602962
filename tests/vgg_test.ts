/**
 * Tests of the VGG regressor. The forward-pass references in tests/fixtures/vgg/expected.safetensors
 * come from PyTorch (tools/make_vgg_fixture.py) with weights and inputs given by closed-form
 * formulas that this file evaluates the same way, so no real weights are needed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  encodeSafetensors,
  readSafetensors,
  type SafeTensorInput,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import {
  AdaptiveAvgPool2d,
  adaptivePoolBins,
  buildVggRegressor,
  DEFAULT_VGG_WEIGHTS_PATH,
  estimateVggSeconds,
  loadVgg11Features,
  oihwToHwio,
  PooledDense,
  registerVggLayers,
  VGG11_CONVS,
  VGG11_FEATURE_KEYS,
  VGG11_FEATURE_PARAMS,
  VGG_TRAINABLE_PARAMS,
  vggFeatureSize,
  vggMacs,
  vggWeightsPath,
} from "../lib/models/vgg.ts";
import { installVggWeights, VGG11_MIRROR_SHA256 } from "../cli/weights.ts";
import { lossFor, trainableVariables } from "../lib/training/train.ts";
import { registerWasmTrainingKernels } from "../lib/runtime/wasm_kernels.ts";

const FIXTURE = new URL("./fixtures/vgg/expected.safetensors", import.meta.url).pathname;
/** The 1x1 adapter weights used by the fixture. */
const ADAPTER = [0.8, -0.5, 0.3];

let formulaCache: Record<string, SafeTensorInput> | undefined;

/** The fixture's conv weights: sin(0.7 k + (0.3 L + 0.1)) * 0.7 / sqrt(9 I), PyTorch layout. */
function formulaFeatures(): Record<string, SafeTensorInput> {
  if (formulaCache) return { ...formulaCache };
  const tensors: Record<string, SafeTensorInput> = {};
  for (const { index, inChannels, outChannels } of VGG11_CONVS) {
    const weight = new Float32Array(outChannels * inChannels * 9);
    const scale = 0.7 / Math.sqrt(9 * inChannels);
    const phase = 0.3 * index + 0.1;
    for (let k = 0; k < weight.length; k++) weight[k] = Math.sin(0.7 * k + phase) * scale;
    const bias = new Float32Array(outChannels);
    for (let k = 0; k < outChannels; k++) bias[k] = 0.05 * Math.sin(1.3 * k + index);
    tensors[`features.${index}.weight`] = {
      dtype: "F32",
      shape: [outChannels, inChannels, 3, 3],
      data: weight,
    };
    tensors[`features.${index}.bias`] = { dtype: "F32", shape: [outChannels], data: bias };
  }
  formulaCache = tensors;
  return { ...tensors };
}

/** The fixture's images: 0.5 + 0.5 sin(0.05 k + 0.9 n), `[n, h, w, 1]`. */
function formulaImages(n: number, h: number, w: number): tf.Tensor4D {
  const data = new Float32Array(n * h * w);
  for (let i = 0; i < n; i++) {
    for (let k = i * h * w; k < (i + 1) * h * w; k++) {
      data[k] = 0.5 + 0.5 * Math.sin(0.05 * k + 0.9 * i);
    }
  }
  return tf.tensor4d(data, [n, h, w, 1]);
}

const tempDir = await Deno.makeTempDir({ prefix: "vgg_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tempDir, { recursive: true }));
const weightsPath = join(tempDir, "formula_vgg11.safetensors");
await writeSafetensors(weightsPath, formulaFeatures());
const expected = await readSafetensors(FIXTURE);

let shared: tf.LayersModel | undefined;
/** One 40x168 model shared by the forward, structure and Adam tests (building one takes seconds). */
async function sharedModel(): Promise<tf.LayersModel> {
  shared ??= await buildVggRegressor({ weightsPath });
  return shared;
}

/** Max |a - b| / (tol_abs + tol_rel |b|) over all elements; <= 1 means close. */
function assertClose(actual: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, want.length, `${what}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const ratio = Math.abs(actual[i] - want[i]) / (1e-5 + 1e-4 * Math.abs(want[i]));
    if (!(ratio <= worst)) [worst, at] = [ratio, i];
  }
  assert.ok(worst <= 1, `${what}: element ${at} is ${actual[at]}, PyTorch gives ${want[at]}`);
}

// The wasm backend (XNNPACK) with the project's training kernels: the cpu backend needs over a
// minute for one Adam step on the 104M-parameter head.
assert.ok(await tf.setBackend("wasm"), "the wasm backend initialises");
registerWasmTrainingKernels();

Deno.test("VGG11_FEATURE_KEYS are torchvision's names and shapes", () => {
  assert.deepEqual(
    VGG11_FEATURE_KEYS.filter((key) => key.endsWith(".weight")),
    [0, 3, 6, 8, 11, 13, 16, 18].map((i) => `features.${i}.weight`),
  );
  assert.equal(VGG11_FEATURE_KEYS.length, 16);
  assert.deepEqual(VGG11_CONVS.map((c) => c.outChannels), [64, 128, 256, 256, 512, 512, 512, 512]);
  assert.equal(VGG11_FEATURE_PARAMS, 9_220_480);
  assert.equal(VGG_TRAINABLE_PARAMS, 3 + 25088 * 4096 + 4096 + 4096 * 256 + 256 + 256 + 1);
  assert.deepEqual(vggFeatureSize(40, 168), [1, 5]);
  assert.deepEqual(vggFeatureSize(32, 32), [1, 1]);
});

Deno.test("oihwToHwio() moves PyTorch's [out, in, h, w] to tfjs' [h, w, in, out]", () => {
  const shape = [2, 3, 2, 2];
  const data = Float32Array.from({ length: 24 }, (_, i) => i);
  const hwio = oihwToHwio(data, shape);
  const viaTf = tf.tensor4d(data, shape as [number, number, number, number])
    .transpose([2, 3, 1, 0]);
  assert.deepEqual([...hwio], [...viaTf.dataSync()]);
  viaTf.dispose();
  // weight[o=1][i=2][y=0][x=1] = ((1*3+2)*2+0)*2+1 = 21 sits at [y=0][x=1][i=2][o=1].
  assert.equal(hwio[((0 * 2 + 1) * 3 + 2) * 2 + 1], 21);
});

Deno.test("adaptivePoolBins() follows PyTorch's floor/ceil rule", () => {
  // The study's 1x5 map: columns floor(j*5/7) .. ceil((j+1)*5/7)-1.
  assert.deepEqual(adaptivePoolBins(5, 7), [[0, 1], [0, 2], [1, 3], [2, 3], [2, 4], [3, 5], [
    4,
    5,
  ]]);
  assert.deepEqual(adaptivePoolBins(1, 7), Array(7).fill([0, 1]));
  assert.deepEqual(adaptivePoolBins(7, 7), [0, 1, 2, 3, 4, 5, 6].map((i) => [i, i + 1]));
  assert.deepEqual(adaptivePoolBins(10, 7), [[0, 2], [1, 3], [2, 5], [4, 6], [5, 8], [7, 9], [
    8,
    10,
  ]]);
});

Deno.test("AdaptiveAvgPool2d matches PyTorch's AdaptiveAvgPool2d((7, 7)) for any input size", () => {
  const channels = 3;
  for (const [h, w] of [[1, 5], [7, 7], [3, 10], [10, 3], [2, 2], [13, 17], [1, 1]]) {
    const want = expected.get(`pool_${h}x${w}`)!;
    assert.deepEqual(want.shape, [1, channels, 7, 7]);
    const nchw = Float32Array.from({ length: channels * h * w }, (_, k) => Math.sin(0.9 * k + 0.2));
    const got = tf.tidy(() => {
      const x = tf.tensor4d(nchw, [1, channels, h, w]).transpose([0, 2, 3, 1]); // [1, h, w, C]
      const layer = new AdaptiveAvgPool2d({ outputSize: [7, 7] });
      const y = layer.apply(x) as tf.Tensor4D; // [1, 7, 7, C]
      assert.deepEqual(y.shape, [1, 7, 7, channels]);
      return y.transpose([0, 3, 1, 2]).dataSync(); // PyTorch's [1, C, 7, 7]
    });
    assertClose(got, want.data, `pool ${h}x${w}`);
  }
});

Deno.test("buildVggRegressor() has the study's layers, frozen VGG and parameter counts", async () => {
  const model = await sharedModel();
  {
    assert.deepEqual(model.inputs[0].shape, [null, 40, 168, 1]);
    assert.deepEqual(model.outputs[0].shape, [null, 1]);
    const count = (weights: tf.LayerVariable[]) =>
      weights.reduce((sum, w) => sum + w.shape.reduce((p, d) => p! * d!, 1)!, 0);
    assert.equal(count(model.trainableWeights), VGG_TRAINABLE_PARAMS); // 103,813,636
    assert.equal(count(model.nonTrainableWeights), VGG11_FEATURE_PARAMS); // 9,220,480
    for (const { index } of VGG11_CONVS) {
      assert.equal(model.getLayer(`features_${index}`).trainable, false);
    }
    for (const name of ["rgb_adapter", "head_fc1", "head_fc2", "head_out"]) {
      assert.equal(model.getLayer(name).trainable, true, name);
    }
    for (const name of ["head_dropout1", "head_dropout2"]) {
      assert.equal(model.getLayer(name).getConfig().rate, 0.5);
    }
    const adapter = model.getLayer("rgb_adapter").getWeights();
    assert.equal(adapter.length, 1, "the 1x1 adapter has no bias");
    // Weights loaded and transposed: features.3.weight[o=5][i=7][y=1][x=2] at [1][2][7][5].
    const kernel = model.getLayer("features_3").getWeights()[0].arraySync() as number[][][][];
    const k = ((5 * 64 + 7) * 3 + 1) * 3 + 2;
    assert.equal(kernel[1][2][7][5], Math.fround(Math.sin(0.7 * k + 1.0) * 0.7 / Math.sqrt(576)));
    // PyTorch init: weights and biases uniform in +-1/sqrt(fan_in).
    for (
      const [name, fanIn] of [["rgb_adapter", 1], ["head_fc1", 25088], ["head_fc2", 4096]] as const
    ) {
      for (const w of model.getLayer(name).getWeights()) {
        const bound = 1 / Math.sqrt(fanIn);
        const values = w.dataSync() as Float32Array;
        const max = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        assert.ok(
          max <= bound * (1 + 1e-6) &&
            (values.length < 100 || max > (values.length >= 4096 ? 0.99 : 0.9) * bound),
          `${name} ${w.shape}: max |w| ${max}`,
        );
      }
    }
  }
});

Deno.test("buildVggRegressor() features and head_fc1 match PyTorch on two 40x168 images", async () => {
  const model = await sharedModel();
  {
    const adapter = model.getLayer("rgb_adapter");
    adapter.setWeights([tf.tensor4d(ADAPTER, [1, 1, 1, 3])]);
    const probe = tf.model({
      inputs: model.inputs,
      outputs: [
        model.getLayer("features_20").output,
        model.getLayer("head_fc1").output,
      ] as tf.SymbolicTensor[],
    });
    const [features, hidden] = tf.tidy(() => {
      const [f, v] = probe.predict(formulaImages(2, 40, 168)) as tf.Tensor[];
      assert.deepEqual(f.shape, [2, 1, 5, 512]);
      assert.deepEqual(v.shape, [2, 4096]);
      // NHWC -> PyTorch's NCHW for comparison.
      return [f.transpose([0, 3, 1, 2]).dataSync(), v.slice([0, 0], [1, 4096]).dataSync()];
    });
    assertClose(features, expected.get("features")!.data, "features [2, 512, 1, 5]");
    // head_fc1 folds the pool into its product: relu(PyTorch's flattened pool @ W + b), in float64.
    const flat = expected.get("flat0")!.data; // [25088]
    const [kernel, bias] = model.getLayer("head_fc1").getWeights().map((w) => w.dataSync());
    const want = new Float64Array(4096);
    for (let j = 0; j < 4096; j++) want[j] = bias[j];
    for (let i = 0; i < 25088; i++) {
      const row = i * 4096;
      for (let j = 0; j < 4096; j++) want[j] += flat[i] * kernel[row + j];
    }
    assertClose(hidden, want.map((v) => Math.max(v, 0)), "head_fc1 [1, 4096]");
    const out = tf.tidy(() => model.predict(formulaImages(2, 40, 168)) as tf.Tensor);
    assert.deepEqual(out.shape, [2, 1]);
    out.dispose();
  }
});

Deno.test("PooledDense equals AdaptiveAvgPool2d, a channel-major flatten and a Dense, with gradients", async () => {
  await tf.setBackend("cpu");
  try {
    const [c, units] = [6, 5];
    // Smaller than the pool (folded), the pool's size (no pool) and larger (pool first).
    for (const [h, w] of [[1, 5], [2, 3], [7, 7], [9, 10]]) {
      const x = tf.tensor4d(
        Float32Array.from({ length: 2 * h * w * c }, (_, k) => Math.sin(0.7 * k + 0.3)),
        [2, h, w, c],
      );
      const layer = new PooledDense({ units, poolSize: [7, 7], activation: "relu" });
      const kernel = tf.tensor2d(
        Float32Array.from({ length: c * 49 * units }, (_, k) => 0.1 * Math.cos(0.37 * k)),
        [c * 49, units],
      );
      const bias = tf.tensor1d([0.1, -0.2, 0.05, 0, 0.3]);
      layer.apply(x); // builds the weights
      layer.setWeights([kernel, bias]);
      const dy = tf.tensor2d(Float32Array.from({ length: 2 * units }, (_, k) => 1 + k), [2, units]);
      const referenceKernel = tf.variable(kernel);
      const layerKernel = layer.trainableWeights[0].read() as tf.Variable;
      const reference = (input: tf.Tensor) => {
        const pooled = new AdaptiveAvgPool2d({ outputSize: [7, 7] }).apply(input) as tf.Tensor4D;
        const flat = pooled.transpose([0, 3, 1, 2]).reshape([2, c * 49]); // PyTorch's order
        return tf.relu(tf.matMul(flat, referenceKernel).add(bias)).mul(dy).sum() as tf.Scalar;
      };
      const ours = (input: tf.Tensor) =>
        (layer.apply(input) as tf.Tensor).mul(dy).sum() as tf.Scalar;
      const label = `${h}x${w}`;
      assertClose(await ours(x).data(), await reference(x).data(), label);
      assertClose(
        await tf.grad(ours)(x).data(),
        await tf.grad(reference)(x).data(),
        `${label} input gradient`,
      );
      const dk = tf.variableGrads(() => ours(x), [layerKernel]).grads[layerKernel.name];
      const dkWant = tf.variableGrads(() => reference(x), [referenceKernel])
        .grads[referenceKernel.name];
      assertClose(await dk.data(), await dkWant.data(), `${label} kernel gradient`);
      assert.ok((await dk.abs().sum().data())[0] > 0, `${label}: the kernel gradient is not zero`);
    }
  } finally {
    await tf.setBackend("wasm");
  }
});

/**
 * PyTorch's first Adam step (zero moments, bias-corrected): p -= lr * g / (|g| + eps), one op at a
 * time with each temporary freed at once. A tidy-scoped Adam (lib/training/train.ts' TorchAdam, tfjs'
 * AdamOptimizer) keeps a dozen temporaries of the 102.8M-weight head_fc1 kernel alive together
 * and runs out of the wasm backend's 4 GB heap.
 */
function adamFirstStep(variable: tf.Variable, grad: tf.Tensor, lr: number): void {
  let t = grad.abs();
  const steps: Array<(x: tf.Tensor) => tf.Tensor> = [
    (x) => x.add(1e-8),
    (x) => grad.div(x),
    (x) => x.mul(lr),
    (x) => variable.sub(x),
  ];
  for (const step of steps) {
    const next = step(t);
    t.dispose();
    t = next;
  }
  variable.assign(t);
  t.dispose();
}

Deno.test("an Adam step updates only the 1x1 adapter and the head", async () => {
  const model = await sharedModel();
  try {
    // The train loop's selection of variables: the adapter kernel and the head's 3 x (kernel, bias).
    const variables = trainableVariables(model);
    assert.deepEqual(
      variables.map((v) => model.weights.find((w) => w.read() === v)!.originalName),
      [
        "rgb_adapter/kernel",
        "head_fc1/kernel",
        "head_fc1/bias",
        "head_fc2/kernel",
        "head_fc2/bias",
        "head_out/kernel",
        "head_out/bias",
      ],
    );
    const before = model.weights.map((w) => w.read().clone());
    const x = formulaImages(1, 40, 168);
    const y = tf.tensor1d([30]);
    const { value, grads } = tf.variableGrads(() => {
      const out = model.apply(x, { training: true }) as tf.Tensor;
      return lossFor(out, y, "regression");
    }, variables);
    for (const v of variables) {
      const norm = tf.tidy(() => grads[v.name].abs().sum().dataSync()[0]);
      assert.ok(norm > 0, `gradient reaches ${v.name}`);
      adamFirstStep(v, grads[v.name], 1e-3);
    }
    tf.dispose([x, y, value, ...Object.values(grads)]);
    model.weights.forEach((w, i) => {
      const changed = tf.tidy(() => tf.any(tf.notEqual(w.read(), before[i])).dataSync()[0] === 1);
      const frozen = w.originalName.startsWith("features_");
      // Frozen variables are also non-trainable tf.Variables, so optimizer.minimize() without a
      // variable list skips them too.
      assert.equal((w.read() as tf.Variable).trainable, !frozen, `${w.originalName} trainable`);
      assert.equal(changed, !frozen, `${w.originalName} changed: ${changed}`);
    });
    tf.dispose(before);
  } finally {
    model.dispose();
    shared = undefined;
  }
});

Deno.test("AdaptiveAvgPool2d and PooledDense survive a model save and load", async () => {
  registerVggLayers();
  registerVggLayers(); // idempotent
  const input = tf.input({ shape: [3, 10, 2] });
  const pooled = new AdaptiveAvgPool2d({ name: "avgpool", outputSize: [7, 7] }).apply(input);
  const flat = tf.layers.flatten().apply(
    tf.layers.permute({ dims: [3, 1, 2] }).apply(pooled),
  ) as tf.SymbolicTensor;
  const dense = new PooledDense({ name: "head", units: 4, poolSize: [7, 7], activation: "relu" })
    .apply(tf.layers.permute({ dims: [2, 1, 3] }).apply(input)) as tf.SymbolicTensor; // [b, 4]
  const output = tf.layers.concatenate().apply([flat, dense]) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: output });
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler((artifacts) => {
    saved = artifacts;
    return Promise.resolve({
      modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" },
    });
  }));
  assert.match(JSON.stringify(saved!.modelTopology), /"class_name":"AdaptiveAvgPool2d"/);
  assert.match(JSON.stringify(saved!.modelTopology), /"class_name":"PooledDense"/);
  const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
  const x = tf.randomUniform([2, 3, 10, 2]);
  const [a, b] = [model.predict(x) as tf.Tensor, loaded.predict(x) as tf.Tensor];
  assert.deepEqual(b.shape, [2, 98 + 4]);
  assert.deepEqual(a.dataSync(), b.dataSync());
  tf.dispose([x, a, b]);
});

Deno.test("buildVggRegressor() says where to put missing weights and how to get them", async () => {
  const missing = join(tempDir, "nowhere", "vgg11.safetensors");
  await assert.rejects(buildVggRegressor({ weightsPath: missing }), (error: Error) => {
    assert.match(
      error.message,
      new RegExp(`^Cannot read ${missing}: VGG11 ImageNet weights not found`),
    );
    assert.match(error.message, /deno task weights vgg11/);
    assert.match(error.message, /torchvision\.models\.vgg11\(weights="IMAGENET1K_V1"\)/);
    assert.match(
      error.message,
      /save_file\(\{k: v for k, v in m\.state_dict\(\)\.items\(\) if k\.startswith\("features\."\)\}/,
    );
    assert.match(error.message, /DIGITSUM_VGG_WEIGHTS/);
    return true;
  });
  assert.equal(vggWeightsPath("x.safetensors"), "x.safetensors");
  const saved = Deno.env.get("DIGITSUM_VGG_WEIGHTS");
  try {
    Deno.env.set("DIGITSUM_VGG_WEIGHTS", "/elsewhere/v.safetensors");
    assert.equal(vggWeightsPath(), "/elsewhere/v.safetensors");
    Deno.env.delete("DIGITSUM_VGG_WEIGHTS");
    assert.equal(vggWeightsPath(), DEFAULT_VGG_WEIGHTS_PATH);
  } finally {
    if (saved !== undefined) Deno.env.set("DIGITSUM_VGG_WEIGHTS", saved);
  }
  await assert.rejects(
    buildVggRegressor({ weightsPath, inputHeight: 31, inputWidth: 168 }),
    /Cannot build the VGG regressor for a 31x168 input: .* at least 32x32/,
  );
});

Deno.test("loadVgg11Features() rejects missing keys, wrong shapes and other VGGs", async () => {
  const good = formulaFeatures();
  const write = async (name: string, tensors: Record<string, SafeTensorInput>) => {
    const path = join(tempDir, name);
    await Deno.writeFile(path, encodeSafetensors(tensors));
    return path;
  };
  const { ["features.13.bias"]: _dropped, ...withoutKey } = good;
  await assert.rejects(
    loadVgg11Features(await write("missing.safetensors", withoutKey)),
    /Cannot read .*missing.safetensors: missing tensor 'features.13.bias' \(expected shape \[512\]\)/,
  );
  const wrong = {
    ...good,
    "features.0.weight": {
      ...good["features.0.weight"],
      shape: [64, 1, 3, 3],
      data: new Float32Array(576),
    },
  };
  await assert.rejects(
    loadVgg11Features(await write("shape.safetensors", wrong as Record<string, SafeTensorInput>)),
    /tensor 'features.0.weight' has shape \[64, 1, 3, 3\], expected \[64, 3, 3, 3\]/,
  );
  const bn = {
    ...good,
    "features.1.weight": { dtype: "F32", shape: [64], data: new Float32Array(64) },
  };
  await assert.rejects(
    loadVgg11Features(await write("bn.safetensors", bn as Record<string, SafeTensorInput>)),
    /unexpected tensor 'features.1.weight'.*VGG11-BN/,
  );
  const nan = good["features.8.bias"].data.slice();
  nan[3] = NaN;
  await assert.rejects(
    loadVgg11Features(
      await write("nan.safetensors", {
        ...good,
        "features.8.bias": { ...good["features.8.bias"], data: nan },
      }),
    ),
    /tensor 'features.8.bias' holds NaN at 3/,
  );
  // A timm-style full checkpoint in half precision: other keys ignored, F16 converted.
  const half: Record<string, SafeTensorInput> = {
    "pre_logits.fc2.bias": { dtype: "F32", shape: [2], data: new Float32Array(2) },
  };
  for (const [key, t] of Object.entries(good)) half[key] = { ...t, dtype: "F16" };
  const loaded = await loadVgg11Features(await write("half.safetensors", half));
  assert.deepEqual([...loaded.keys()], [...VGG11_FEATURE_KEYS]);
  assert.equal(loaded.get("features.0.weight")!.dtype, "F16");
  const halfBias = loaded.get("features.0.bias")!.data;
  good["features.0.bias"].data.forEach((v, i) => {
    assert.ok(Math.abs(halfBias[i] - v) <= Math.abs(v) * 2 ** -11, `F16 bias ${i}`);
  });
});

Deno.test("installVggWeights() installs features from a local checkpoint atomically", async () => {
  const source = join(tempDir, "timm_like.safetensors");
  await Deno.writeFile(
    source,
    encodeSafetensors({
      ...formulaFeatures(),
      "head.fc.bias": { dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) },
    }),
  );
  const out = join(tempDir, "weights", "vgg11.safetensors");
  const lines: string[] = [];
  const result = await installVggWeights({ from: source, out, log: (l) => lines.push(l) });
  assert.equal(result.status, "installed");
  assert.equal(result.matchesMirror, false);
  assert.match(result.sourceSha256!, /^[0-9a-f]{64}$/);
  assert.notEqual(result.sourceSha256, VGG11_MIRROR_SHA256);
  const installed = await readSafetensors(out);
  assert.deepEqual([...installed.keys()], [...VGG11_FEATURE_KEYS]);
  assert.deepEqual(
    installed.get("features.18.weight")!.data,
    formulaFeatures()["features.18.weight"].data,
  );
  assert.deepEqual([...Deno.readDirSync(join(tempDir, "weights"))].map((e) => e.name), [
    "vgg11.safetensors",
  ]);
  // Already there: nothing to do. A bad source leaves the installed file alone.
  assert.equal((await installVggWeights({ out, log: () => {} })).status, "present");
  const bad = join(tempDir, "bad.safetensors");
  await Deno.writeFile(
    bad,
    encodeSafetensors({
      "features.0.bias": { dtype: "F32", shape: [64], data: new Float32Array(64) },
    }),
  );
  await assert.rejects(
    installVggWeights({ from: bad, out, log: () => {} }),
    /missing tensor 'features.0.weight'/,
  );
  assert.equal((await readSafetensors(out)).size, 16);
});

Deno.test("installVggWeights() explains how to provide the file when the download fails", async () => {
  const out = join(tempDir, "dl", "vgg11.safetensors");
  await assert.rejects(
    installVggWeights({ out, url: "http://127.0.0.1:9/model.safetensors", log: () => {} }),
    (error: Error) => {
      assert.match(error.message, /^Cannot download http:\/\/127.0.0.1:9\/model.safetensors: /);
      assert.match(
        error.message,
        /huggingface.co\/timm\/vgg11.tv_in1k\/resolve\/[0-9a-f]{40}\/model.safetensors/,
      );
      assert.match(error.message, new RegExp(VGG11_MIRROR_SHA256));
      assert.match(
        error.message,
        /deno task weights vgg11 --from path\/to\/file.safetensors --out /,
      );
      return true;
    },
  );
  assert.deepEqual([...Deno.readDirSync(join(tempDir, "dl"))], [], "no temp file left behind");
});

Deno.test("estimateVggSeconds() scales with images, backend and input size", () => {
  const wasm = estimateVggSeconds(24_000, "wasm");
  assert.ok(wasm > 0 && Number.isFinite(wasm));
  assert.ok(Math.abs(estimateVggSeconds(48_000, "wasm") - 2 * wasm) < 1e-6 * wasm);
  assert.ok(estimateVggSeconds(24_000, "cpu") > 10 * wasm);
  assert.ok(estimateVggSeconds(24_000, "wasm", { training: false }) < wasm);
  assert.ok(
    estimateVggSeconds(1, "wasm", { inputHeight: 224, inputWidth: 224 }) >
      estimateVggSeconds(1, "wasm"),
  );
  const { features, head } = vggMacs(40, 168);
  assert.equal(head, 25088 * 4096 + 4096 * 256 + 256);
  assert.ok(features > 9e8 && features < 1.2e9, `features MACs ${features}`);
});
