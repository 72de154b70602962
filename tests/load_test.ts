/**
 * `deno task predict` and `deno task evaluate` under load: a large `.npy` file is read a batch at
 * a time (peak memory does not grow with the file), and many PNG files given at once share
 * batches and come out in order. A tiny real checkpoint keeps the model's cost out of the
 * measurement; tools/load_check.ts measures 100,000 images with SumNet (docs/FAULTS.md).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import { saveCheckpoint } from "../lib/training/checkpoint.ts";
import { ensureDataset } from "../lib/data/generate.ts";
import { seedEverything } from "../lib/runtime/seed.ts";
import { runMeasured, writeImageFiles, writePngFiles } from "../tools/load_check.ts";

/**
 * Images in the small file: enough batches (157) that the runtime's garbage collector has settled.
 * With 2,000 images a run can end before the first full collection, and its lower peak once made
 * a bounded run look like 49 MiB of growth (CI, 134 -> 183 MiB).
 */
const SMALL = 10_000;
const LARGE = 60_000; // 403 MB of images
/**
 * Most the peak memory may grow from SMALL to LARGE images. Reading the file whole would add at
 * least its extra 320 MiB of bytes (1,280 MiB as float32). A bounded reader's peak moves with
 * garbage collection timing: 30-81 MiB of growth measured from 10,000 to 40,000, 60,000 and 80,000
 * images (the peak levels off at about 255 MiB).
 */
const MAX_GROWTH = 160 * 2 ** 20;
const PNGS = 300;

Deno.test("predict and evaluate read a large .npy in bounded memory, and many PNGs at once in order", async () => {
  if (Deno.build.os !== "linux") {
    console.log("load_test: peak memory is read from /proc: Linux only; skipped");
    return;
  }
  const root = await Deno.makeTempDir({ prefix: "digitsum_load_test_" });
  try {
    const data = join(root, "data");
    await ensureDataset(data, { imagesPerFile: 100, testCount: 500, log: () => {} });
    // A tiny real checkpoint: pooling and one dense layer over the 40 x 168 image.
    await initBackend("cpu", { quiet: true });
    seedEverything(3);
    const model = tf.sequential({
      layers: [
        tf.layers.averagePooling2d({ inputShape: [40, 168, 1], poolSize: 8 }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 37 }),
      ],
    });
    const checkpoint = join(root, "tiny");
    await saveCheckpoint(checkpoint, model, { kind: "tiny" });
    const env = { DIGITSUM_THREADS: "1" };
    const peaks: Record<string, number[]> = { predict: [], evaluate: [] };
    for (const count of [SMALL, LARGE]) {
      const { images, labels } = await writeImageFiles(root, count, data);
      const predict = await runMeasured("predict", [
        images,
        "--model",
        checkpoint,
        "--backend",
        "wasm",
      ], env);
      assert.equal(predict.code, 0, predict.stderr);
      const sums = predict.stdout.split("\n").filter((l) => / sum \d+$/.test(l));
      assert.equal(sums.length, count);
      assert.match(
        sums[count - 1],
        new RegExp(`^images_${count}\\.npy\\[${count - 1}\\]: sum \\d+$`),
      );
      const evaluate = await runMeasured("evaluate", [
        "--model",
        checkpoint,
        "--images",
        images,
        "--labels",
        labels,
        "--backend",
        "wasm",
      ], env);
      assert.equal(evaluate.code, 0, evaluate.stderr);
      assert.match(
        evaluate.stdout,
        new RegExp(`Correct: \\d+/${count}\\naccuracy=\\d+\\.\\d\\d\\n$`),
      );
      peaks.predict.push(predict.peakRss);
      peaks.evaluate.push(evaluate.peakRss);
      await Deno.remove(images);
    }
    for (const [cli, [small, large]] of Object.entries(peaks)) {
      assert.ok(small > 0 && large > 0, `${cli}: no peak memory read`);
      assert.ok(
        large - small < MAX_GROWTH,
        `${cli}: peak RSS grew from ${small >> 20} MiB (${SMALL} images) to ${large >> 20} MiB ` +
          `(${LARGE} images)`,
      );
    }
    // Many PNG files at once: one line each, in the order given, the same sums as the .npy.
    const pngs = await writePngFiles(root, PNGS, data);
    const { images } = await writeImageFiles(root, PNGS, data);
    const [fromPngs, fromNpy] = await Promise.all([
      runMeasured("predict", [...pngs, "--model", checkpoint, "--backend", "wasm"], env),
      runMeasured("predict", [images, "--model", checkpoint, "--backend", "wasm"], env),
    ]);
    assert.equal(fromPngs.code, 0, fromPngs.stderr);
    const lines = fromPngs.stdout.split("\n").filter((l) => / sum \d+$/.test(l));
    assert.deepEqual(
      lines.map((l) => l.split(":")[0]),
      pngs.map((p) => p.split("/").at(-1)),
    );
    const npySums = fromNpy.stdout.split("\n").filter((l) => / sum \d+$/.test(l)).map((l) =>
      l.split(": ")[1]
    );
    assert.deepEqual(lines.map((l) => l.split(": ")[1]), npySums);
    console.log(
      `load: peak RSS predict ${peaks.predict.map((b) => `${b >> 20} MiB`).join(" -> ")}, ` +
        `evaluate ${peaks.evaluate.map((b) => `${b >> 20} MiB`).join(" -> ")} ` +
        `(${SMALL} -> ${LARGE} images); ${PNGS} PNGs at once: ${
          (fromPngs.peakRss / 2 ** 20).toFixed(0)
        } MiB, ` +
        `${fromPngs.seconds.toFixed(1)} s`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
