import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import { seedEverything } from "../lib/runtime/seed.ts";
import { buildModel, modelInfo, modelKinds } from "../lib/models/mod.ts";

await initBackend("wasm", { quiet: true });

Deno.test("buildModel() gives the study's parameter counts and output shapes", async () => {
  const expected: Record<string, [number, number[]]> = {
    "cnn-regressor": [6_933_377, [2, 1]],
    "cnn-classifier": [6_938_021, [2, 37]],
  };
  for (const [kind, [params, shape]] of Object.entries(expected)) {
    const model = await buildModel(kind);
    assert.equal(model.countParams(), params, kind);
    const out = model.predict(tf.zeros([2, 40, 168, 1])) as tf.Tensor;
    assert.deepEqual(out.shape, shape, kind);
    tf.dispose([out]);
    model.dispose();
  }
});

Deno.test("buildModel() uses PyTorch's default init bounds", async () => {
  const model = await buildModel("cnn-regressor");
  const bounds: Record<string, number> = {
    conv1: 1 / Math.sqrt(9),
    conv2: 1 / Math.sqrt(32 * 9),
    fc1: 1 / Math.sqrt(26_880),
    fc2: 1 / Math.sqrt(256),
    out: 1 / Math.sqrt(128),
  };
  for (const [name, bound] of Object.entries(bounds)) {
    for (const w of model.getLayer(name).getWeights()) {
      const values = w.dataSync();
      let max = 0;
      for (const v of values) max = Math.max(max, Math.abs(v));
      assert.ok(max <= bound, `${name} ${max} > ${bound}`);
      if (values.length > 100) {
        assert.ok(max > bound * 0.9, `${name} max ${max} far below ${bound}`);
      }
    }
  }
  model.dispose();
});

Deno.test("buildModel() is deterministic for a seed and differs across seeds", async () => {
  const weightsFor = async (seed: number) => {
    seedEverything(seed);
    const model = await buildModel("cnn-classifier");
    const values = model.getLayer("conv2").getWeights()[0].dataSync().slice();
    model.dispose();
    return values;
  };
  const a = await weightsFor(0);
  const b = await weightsFor(0);
  const c = await weightsFor(10);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("modelInfo() rejects an unknown kind and lists the known ones", () => {
  assert.throws(() => modelInfo("resnet"), /Unknown model 'resnet': expected one of cnn-regressor/);
  assert.ok(modelKinds().includes("vgg-regressor"));
});
