import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { initBackend } from "../lib/backend.ts";
import { loadCheckpoint, saveCheckpoint } from "../lib/checkpoint.ts";
import { buildModel } from "../lib/models.ts";
import { seedEverything } from "../lib/seed.ts";
import { TorchAdam, trainableVariables } from "../lib/train.ts";

await initBackend("wasm", { quiet: true });

Deno.test("saveCheckpoint() and loadCheckpoint() round-trip weights, predictions and optimizer", async () => {
  const dir = await Deno.makeTempDir();
  seedEverything(1);
  const model = await buildModel("cnn-classifier");
  const adam = new TorchAdam(trainableVariables(model));
  const x = tf.randomUniform([3, 40, 168, 1]);
  const grads = trainableVariables(model).map((v) => tf.onesLike(v));
  adam.apply(grads);
  await saveCheckpoint(join(dir, "ck"), model, { kind: "cnn-classifier", seed: 1 }, {
    optimizer: adam,
  });
  const before = (model.predict(x) as tf.Tensor).dataSync();
  const loaded = await loadCheckpoint(join(dir, "ck"));
  const after = (loaded.model.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(after, before);
  assert.equal(loaded.meta.kind, "cnn-classifier");
  assert.equal(loaded.meta.seed, 1);
  assert.equal(loaded.optimizerState?.step, 1);
  assert.deepEqual(loaded.optimizerState?.m[0], (await adam.getState()).m[0]);
  // No temporary directories are left behind.
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["ck"]);
  // Saving again replaces the checkpoint in place.
  await saveCheckpoint(join(dir, "ck"), model, { kind: "cnn-classifier", seed: 2 });
  assert.equal((await loadCheckpoint(join(dir, "ck"))).meta.seed, 2);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["ck"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadCheckpoint() rejects missing, truncated and corrupt checkpoints by name", async () => {
  const dir = await Deno.makeTempDir();
  const ck = join(dir, "ck");
  await assert.rejects(
    loadCheckpoint(ck),
    new RegExp(`Cannot load checkpoint ${ck}: .*model.json is missing`),
  );
  const model = await buildModel("cnn-regressor");
  await saveCheckpoint(ck, model, { kind: "cnn-regressor" });
  const weights = await Deno.readFile(join(ck, "weights.bin"));
  await Deno.writeFile(join(ck, "weights.bin"), weights.subarray(0, weights.length - 8));
  await assert.rejects(loadCheckpoint(ck), /weights.bin holds \d+ bytes, model.json expects \d+/);
  await Deno.remove(join(ck, "weights.bin"));
  await assert.rejects(loadCheckpoint(ck), /weights file weights.bin is missing/);
  await Deno.writeTextFile(join(ck, "model.json"), "{not json");
  await assert.rejects(loadCheckpoint(ck), /model.json is not valid JSON/);
  await Deno.writeTextFile(join(ck, "model.json"), JSON.stringify({ format: "layers-model" }));
  await assert.rejects(loadCheckpoint(ck), /has no modelTopology or weightsManifest/);
  await Deno.remove(dir, { recursive: true });
});
