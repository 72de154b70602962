import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { initBackend } from "../lib/runtime/backend.ts";
import {
  checkImageModel,
  loadCheckpoint,
  recoverCheckpoint,
  saveCheckpoint,
} from "../lib/training/checkpoint.ts";
import { seedEverything } from "../lib/runtime/seed.ts";
import { TorchAdam, trainableVariables } from "../lib/training/train.ts";
import { buildModel } from "../lib/models/mod.ts";

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

/** The parts of model.json these tests edit. */
interface ModelJson {
  modelTopology: {
    config: {
      layers: Array<{ name: string; inbound_nodes: unknown[][][]; config: { units?: number } }>;
    };
  };
  weightsManifest: Array<{ paths: string[] }>;
}

/** A small functional model (input -> dense -> dense) saved as a checkpoint; its model.json. */
async function functionalCheckpoint(dir: string): Promise<ModelJson> {
  const input = tf.input({ shape: [40, 168, 1] });
  const flat = tf.layers.flatten().apply(input) as tf.SymbolicTensor;
  const hidden = tf.layers.dense({ units: 4, name: "hidden" }).apply(flat) as tf.SymbolicTensor;
  const output = tf.layers.dense({ units: 1, name: "out" }).apply(hidden) as tf.SymbolicTensor;
  await saveCheckpoint(dir, tf.model({ inputs: input, outputs: output }), { kind: "test" });
  return JSON.parse(await Deno.readTextFile(join(dir, "model.json")));
}

Deno.test("loadCheckpoint() refuses a topology tfjs would loop on forever or allocate gigabytes for", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ck = join(dir, "ck");
    const original = await functionalCheckpoint(ck);
    const write = (json: unknown) =>
      Deno.writeTextFile(join(ck, "model.json"), JSON.stringify(json));
    // The hidden layer is never called: tfjs retries the output layer's call forever (a hang).
    const dangling = structuredClone(original);
    const layer = (json: ModelJson, name: string) =>
      json.modelTopology.config.layers.find((l) => l.name === name)!;
    layer(dangling, "hidden").inbound_nodes = [];
    await write(dangling);
    await assert.rejects(
      loadCheckpoint(ck),
      /Cannot load checkpoint .*: model\.json has layer calls whose inputs never exist \(layer 'out'/,
    );
    // A call from a layer that does not exist.
    const missing = structuredClone(original);
    layer(missing, "out").inbound_nodes[0][0][0] = "nowhere";
    await write(missing);
    await assert.rejects(
      loadCheckpoint(ck),
      /connects layer 'out' to "nowhere", which is not a layer/,
    );
    // 200 million units: refused before tfjs allocates the 5 TB kernel it asks for.
    const huge = structuredClone(original);
    layer(huge, "hidden").config.units = 200_000_000;
    await write(huge);
    const before = Deno.memoryUsage().external;
    await assert.rejects(
      loadCheckpoint(ck),
      /model\.json its layers ask for more weight values .* than the weights manifest holds \(26889\)/,
    );
    assert.ok(Deno.memoryUsage().external - before < 64 * 2 ** 20);
    // Weights files outside the checkpoint folder, and a model.json that is not an object.
    const outside = structuredClone(original);
    outside.weightsManifest[0].paths = ["../../etc/passwd"];
    await write(outside);
    await assert.rejects(
      loadCheckpoint(ck),
      /model\.json lists weights file "\.\.\/\.\.\/etc\/passwd"/,
    );
    for (const text of ["null", "[]", "7"]) {
      await Deno.writeTextFile(join(ck, "model.json"), text);
      await assert.rejects(loadCheckpoint(ck), /model\.json is not a JSON object/);
    }
    await write(original);
    for (
      const [text, pattern] of [
        ["null", /digitsum\.json is not a JSON object/],
        ['{"kind": 3}', /digitsum\.json has no model 'kind'/],
        [
          '{"kind": "x", "history": [{"epoch": 2}]}',
          /digitsum\.json has an invalid history: history entry 0 is not epoch 1/,
        ],
      ] as const
    ) {
      await Deno.writeTextFile(join(ck, "digitsum.json"), text);
      await assert.rejects(loadCheckpoint(ck), pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkImageModel() refuses a layer with an empty output before running an image", async () => {
  // The shipped SumNet with 'valid' instead of 'same' padding in conv3 (a fuzz case): its cell
  // layer's output is 0 rows tall, and running an image through it traps the wasm backend, whose
  // heap is unusable afterwards. The shapes give it away first.
  const shipped = new URL("../trained_models/sumnet", import.meta.url).pathname;
  const dir = await Deno.makeTempDir();
  try {
    for (const file of ["model.json", "weights.bin", "digitsum.json"]) {
      await Deno.copyFile(join(shipped, file), join(dir, file));
    }
    const json = JSON.parse(await Deno.readTextFile(join(dir, "model.json")));
    const conv3 = json.modelTopology.config.layers.find(
      (l: { config: { name: string } }) => l.config.name === "conv3",
    );
    delete conv3.config.padding;
    await Deno.writeTextFile(join(dir, "model.json"), JSON.stringify(json));
    const { model } = await loadCheckpoint(dir);
    assert.throws(
      () => checkImageModel(model, dir),
      /model\.json describes a model whose layer 'cell_features' outputs \[N, 0, 20, 192\]/,
    );
    model.dispose(); // the backend is still usable
    const fine = await loadCheckpoint(shipped);
    checkImageModel(fine.model, shipped);
    fine.model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveCheckpoint() leaves the seeded generator alone (a resumed run draws what an uninterrupted one draws)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
    seedEverything(7);
    const expected = [Math.random(), Math.random()];
    seedEverything(7);
    await saveCheckpoint(join(dir, "ck"), model, { kind: "test" });
    // Before: the checkpoint's temp folder name came from Math.random (the seeded generator).
    assert.deepEqual([Math.random(), Math.random()], expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recoverCheckpoint() finishes a swap that a kill interrupted, and removes leftovers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
    const ck = join(dir, "state");
    await saveCheckpoint(ck, model, { kind: "test", seed: 1 });
    await saveCheckpoint(`${ck}.tmp-1-new`, model, { kind: "test", seed: 2 });
    await Deno.mkdir(`${ck}.tmp-2-half`); // a temp folder without digitsum.json: incomplete
    // Killed between the two renames: the old one moved aside, the new one not in place.
    await Deno.rename(ck, `${ck}.old-1-0`);
    assert.equal(await recoverCheckpoint(ck), true);
    assert.equal((await loadCheckpoint(ck)).meta.seed, 2);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["state"]);
    assert.equal(await recoverCheckpoint(join(dir, "none")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
