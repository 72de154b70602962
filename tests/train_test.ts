import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import { seedEverything } from "../lib/runtime/seed.ts";
import {
  countCorrect,
  evaluateAccuracy,
  formatEpochLine,
  formatOverallLine,
  lossFor,
  predictionsFromOutput,
  roundHalfEven,
  TorchAdam,
  trainModel,
} from "../lib/training/train.ts";
import { type Batch, type BatchSource } from "../lib/data/batch.ts";

await initBackend("wasm", { quiet: true });

/** A loader over fixed arrays, for tests of the loop itself. */
function arraySource(
  xs: Float32Array,
  ys: Float32Array,
  shape: number[],
  batchSize: number,
): BatchSource {
  const n = ys.length;
  const per = xs.length / n;
  return {
    name: "test",
    size: n,
    numBatches: Math.ceil(n / batchSize),
    *batches(): Generator<Batch> {
      for (let i = 0, b = 0; i < n; i += batchSize, b++) {
        const m = Math.min(batchSize, n - i);
        yield {
          x: tf.tensor4d(
            xs.slice(i * per, (i + m) * per),
            [m, ...shape] as [number, number, number, number],
          ),
          y: tf.tensor1d(ys.slice(i, i + m)),
          index: b,
        };
      }
    },
  };
}

Deno.test("roundHalfEven() rounds .5 to the even neighbour like torch.round", () => {
  const cases: Array<[number, number]> = [
    [24.5, 24],
    [25.5, 26],
    [0.5, 0],
    [1.5, 2],
    [-0.5, -0],
    [-1.5, -2],
    [-2.5, -2],
    [17.49, 17],
    [17.51, 18],
    [36, 36],
  ];
  for (const [x, want] of cases) assert.equal(roundHalfEven(x), want, `round(${x})`);
});

Deno.test("predictionsFromOutput() rounds regressions and takes the argmax of logits", () => {
  assert.deepEqual(
    [...predictionsFromOutput(new Float32Array([24.5, 25.5, 3.2]), 3, "regression")],
    [
      24,
      26,
      3,
    ],
  );
  const logits = new Float32Array([0, 5, 1, /* */ 9, 2, 3]);
  assert.deepEqual([...predictionsFromOutput(logits, 2, "classification")], [1, 0]);
});

Deno.test("countCorrect() and the two accuracies follow the study's arithmetic", async () => {
  assert.equal(countCorrect([1, 2, 3, 4], [1, 0, 3, 0]), 2);
  // 3 images in two batches of 2 and 1: per-batch mean differs from the overall accuracy.
  const model = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [1, 1, 1] }),
      tf.layers.dense({ units: 1, useBias: false, kernelInitializer: "ones" }),
    ],
  });
  const xs = new Float32Array([24.5, 7, 3]); // outputs equal inputs; 24.5 rounds to 24
  const ys = new Float32Array([24, 8, 3]);
  const result = await evaluateAccuracy(model, arraySource(xs, ys, [1, 1, 1], 2), "regression");
  assert.equal(result.correct, 2);
  assert.equal(result.total, 3);
  assert.ok(Math.abs(result.accuracy - 200 / 3) < 1e-9);
  assert.equal(result.batchMeanAccuracy, (50 + 100) / 2);
  assert.deepEqual([...result.predictions], [24, 7, 3]);
});

Deno.test("formatEpochLine() and formatOverallLine() print the study's formats", () => {
  assert.equal(
    formatEpochLine({
      epoch: 3,
      trainLoss: 15.87964,
      valAccuracy: 10.41666,
      seconds: 1,
      trainImagesPerSecond: 1,
    }, 15),
    "Epoch 3/15, Train Loss: 15.8796, Val Accuracy: 10.4167",
  );
  assert.equal(
    formatOverallLine("Regressor", "Validation", 11.7666),
    "Overall Accuracy of Regressor on Validation Split: 11.77%",
  );
});

Deno.test("lossFor() is MSE for regression and cross entropy for classification", () => {
  const mse = lossFor(tf.tensor2d([[1], [3]]), tf.tensor1d([0, 1]), "regression");
  assert.ok(Math.abs(mse.dataSync()[0] - 2.5) < 1e-6);
  const logits = tf.tensor2d([[0, Math.log(3)]]); // p = [0.25, 0.75]
  const ce = lossFor(logits, tf.tensor1d([1]), "classification");
  assert.ok(Math.abs(ce.dataSync()[0] + Math.log(0.75)) < 1e-6);
});

for (const backend of ["wasm", "cpu"] as const) {
  const placement = backend === "wasm" ? "host" : "device";
  Deno.test(`TorchAdam follows PyTorch's update rule step by step (${backend}, moments on the ${placement})`, async () => {
    await initBackend(backend, { quiet: true });
    try {
      // Reference computed by hand in double precision from torch.optim.Adam's formula.
      const p = tf.variable(tf.tensor1d([1, -2]));
      const adam = new TorchAdam([p], { learningRate: 0.1 });
      assert.equal(adam.placement, placement);
      let m = [0, 0], v = [0, 0];
      let ref = [1, -2];
      const grads = [[0.5, -1], [0.25, 2], [-1, 0.1]];
      for (let t = 1; t <= grads.length; t++) {
        const g = grads[t - 1];
        adam.apply([tf.tensor1d(g)]);
        m = m.map((mi, i) => 0.9 * mi + 0.1 * g[i]);
        v = v.map((vi, i) => 0.999 * vi + 0.001 * g[i] * g[i]);
        const bc1 = 1 - 0.9 ** t, bc2 = 1 - 0.999 ** t;
        ref = ref.map((r, i) => r - (0.1 / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + 1e-8));
      }
      const got = p.dataSync();
      for (let i = 0; i < 2; i++) {
        assert.ok(Math.abs(got[i] - ref[i]) < 1e-5, `${got[i]} vs ${ref[i]}`);
      }
      // The state holds PyTorch's moments; a fresh optimiser given it continues identically.
      const state = await adam.getState();
      assert.equal(state.step, 3);
      for (let i = 0; i < 2; i++) {
        assert.ok(Math.abs(state.m[0][i] - m[i]) < 1e-6);
        assert.ok(Math.abs(state.v[0][i] - v[i]) < 1e-6);
      }
      const q = tf.variable(p.clone());
      const other = new TorchAdam([q], { learningRate: 0.1 });
      other.setState(state);
      adam.apply([tf.tensor1d([0.3, 0.3])]);
      other.apply([tf.tensor1d([0.3, 0.3])]);
      assert.deepEqual([...q.dataSync()], [...p.dataSync()]);
      adam.dispose();
      other.dispose();
    } finally {
      await initBackend("wasm", { quiet: true });
    }
  });
}

Deno.test("trainModel() lowers the loss of a small conv net and reports every epoch", async () => {
  const n = 96;
  const xs = new Float32Array(n * 8 * 8);
  const ys = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const k = i % 4; // label = number of bright quadrants
    ys[i] = k;
    for (let q = 0; q < k; q++) {
      const oy = (q >> 1) * 4, ox = (q & 1) * 4;
      for (let a = 0; a < 4; a++) {
        for (let b = 0; b < 4; b++) xs[i * 64 + (oy + a) * 8 + ox + b] = 1;
      }
    }
  }
  seedEverything(3); // the initial weights, so that the test is the same every run
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [8, 8, 1],
        filters: 4,
        kernelSize: 3,
        padding: "same",
        activation: "relu",
      }),
      tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 1 }),
    ],
  });
  const lines: string[] = [];
  const source = arraySource(xs, ys, [8, 8, 1], 16);
  const { history } = await trainModel(model, { train: source, val: source }, {
    task: "regression",
    epochs: 8,
    learningRate: 1e-2,
    log: (line) => lines.push(line),
  });
  assert.equal(history.length, 8);
  assert.equal(lines.length, 8);
  assert.match(lines[0], /^Epoch 1\/8, Train Loss: \d+\.\d{4}, Val Accuracy: \d+\.\d{4}$/);
  assert.ok(
    history[7].trainLoss < history[0].trainLoss / 2,
    `${history[0].trainLoss} -> ${history[7].trainLoss}`,
  );
});

Deno.test("trainModel() stopped after a batch and resumed ends exactly where an unbroken run ends", async () => {
  const n = 80;
  const xs = Float32Array.from({ length: n * 16 }, (_, i) => ((i * 7919) % 13) / 13);
  const ys = Float32Array.from({ length: n }, (_, i) => i % 5);
  const build = () => {
    const model = tf.sequential({
      layers: [
        tf.layers.flatten({ inputShape: [4, 4, 1] }),
        tf.layers.dense({ units: 6, activation: "relu", kernelInitializer: "ones" }),
        tf.layers.dense({ units: 1, kernelInitializer: "zeros" }),
      ],
    });
    return model;
  };
  const source = arraySource(xs, ys, [4, 4, 1], 16); // 5 batches per epoch
  const common = { task: "regression" as const, epochs: 3, learningRate: 1e-2, log: null };

  const unbroken = build();
  const whole = await trainModel(unbroken, { train: source, val: source }, common);

  const model = build();
  let batches = 0;
  const first = await trainModel(model, { train: source, val: source }, {
    ...common,
    stopAfterBatch: () => ++batches === 7, // epoch 2, after its second batch
  });
  assert.equal(first.stopped, true);
  assert.deepEqual(
    { ...first.unfinished, lossSum: 0, seconds: 0 },
    { epoch: 2, batches: 2, seen: 32, lossSum: 0, seconds: 0 },
  );
  assert.equal(first.history.length, 1, "only the finished epoch is in the history");
  const seenBatches: number[] = [];
  const rest = await trainModel(model, { train: source, val: source }, {
    ...common,
    optimizer: first.optimizer,
    startEpoch: first.history.length,
    history: first.history,
    resume: first.unfinished,
    onBatchEnd: (p) => void seenBatches.push(p.epoch * 10 + p.batch),
  });
  assert.equal(rest.stopped, false);
  assert.deepEqual(seenBatches.slice(0, 4), [23, 24, 25, 31], "resumes with batch 3 of epoch 2");
  assert.deepEqual(
    rest.history.map((r) => [r.epoch, r.trainLoss, r.valAccuracy]),
    whole.history.map((r) => [r.epoch, r.trainLoss, r.valAccuracy]),
  );
  const a = unbroken.getWeights().map((w) => [...w.dataSync()]);
  const b = model.getWeights().map((w) => [...w.dataSync()]);
  assert.deepEqual(b, a);
  await assert.rejects(
    trainModel(build(), { train: source, val: source }, { ...common, resume: first.unfinished }),
    /cannot resume epoch 2 with startEpoch 0/,
  );
});
