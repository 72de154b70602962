/**
 * How well SumNet reads hand-drawn digits after the page's preprocessing (`lib/data/drawing.ts`),
 * without a browser: MNIST digits are traced into strokes (`lib/data/trace.ts`), laid out as a
 * person might draw four of them (`handLayout`), redrawn by `drawingToModelImage` and read by the
 * shipped SumNet. The preprocessing settings were chosen with `--split train` (MNIST's training
 * digits); the browser test measures the page itself on test digits drawn by its mouse.
 *
 * `deno run -A tools/drawing_accuracy.ts [--split train|test] [--count 300] [--seed 1]
 *   [--digit-height 20] [--pen-width 2.8] [--edge-width 1] [--digit-gap 8] [--png FILE]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import seedrandom from "seedrandom";
import { initBackend } from "../lib/runtime/backend.ts";
import { loadCheckpoint } from "../lib/training/checkpoint.ts";
import { runMain } from "../lib/cli/args.ts";
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_DIGITS } from "../lib/constants.ts";
import { DEFAULT_DRAWING, type DrawingOptions, drawingToModelImage } from "../lib/data/drawing.ts";
import { writeFileAtomic } from "../lib/io/fsutil.ts";
import { loadMnist } from "../lib/data/generate.ts";
import { encodePng } from "../lib/io/png.ts";
import { explainBatch } from "../lib/models/sumnet/mod.ts";
import { handLayout, placeDigits, traceDigit } from "../lib/data/trace.ts";

/** MNIST's side and pixels. */
const SIDE = 28;
const PIXELS = SIDE * SIDE;
/** Images per forward pass. */
const BATCH = 64;

/** Parses a positive number flag. */
function positive(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0)) throw new Error(`--${flag} must be a positive number, got '${value}'`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      split: { type: "string", default: "train" },
      count: { type: "string", default: "300" },
      seed: { type: "string", default: "1" },
      "digit-height": { type: "string" },
      "pen-width": { type: "string" },
      "edge-width": { type: "string" },
      "digit-gap": { type: "string" },
      png: { type: "string" },
      backend: { type: "string" },
    },
  });
  if (values.split !== "train" && values.split !== "test") {
    throw new Error(`--split must be train or test, got '${values.split}'`);
  }
  const count = positive(values.count, "count")!;
  const overrides: Partial<DrawingOptions> = {};
  const set = (key: keyof DrawingOptions, flag: string) => {
    const v = positive(values[flag as keyof typeof values] as string | undefined, flag);
    if (v !== undefined) overrides[key] = v;
  };
  set("digitHeight", "digit-height");
  set("penWidth", "pen-width");
  set("edgeWidth", "edge-width");
  set("digitGap", "digit-gap");
  await initBackend(values.backend);
  const { model } = await loadCheckpoint("trained_models/sumnet");
  const mnist = await loadMnist(values.split);
  const random = seedrandom(`drawing-accuracy-${values.seed}`);
  const images = new Uint8Array(count * IMAGE_SIZE);
  const sums: number[] = [];
  for (let n = 0; n < count; n++) {
    const picks = Array.from({ length: NUM_DIGITS }, () => Math.floor(random() * mnist.count));
    const digits = picks.map((i) => ({
      strokes: traceDigit(mnist.images.subarray(i * PIXELS, (i + 1) * PIXELS), {
        width: SIDE,
        height: SIDE,
      }),
      side: SIDE,
    }));
    const strokes = placeDigits(digits, handLayout(NUM_DIGITS, random));
    images.set(drawingToModelImage(strokes, overrides).pixels, n * IMAGE_SIZE);
    sums.push(picks.reduce((s, i) => s + mnist.labels[i], 0));
  }
  let correct = 0;
  for (let start = 0; start < count; start += BATCH) {
    const size = Math.min(BATCH, count - start);
    const x = tf.tidy(() =>
      tf.tensor4d(
        Float32Array.from(images.subarray(start * IMAGE_SIZE, (start + size) * IMAGE_SIZE)),
        [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1],
      ).div(255)
    ) as tf.Tensor4D;
    const readings = await explainBatch(model, x);
    x.dispose();
    readings.forEach((r, i) => {
      if (r.sum === sums[start + i]) correct++;
    });
  }
  const settings = { ...DEFAULT_DRAWING, ...overrides };
  console.log(
    `drawn ${values.split} digits, ${count} samples of four (seed ${values.seed}): ` +
      `${correct} sums right = ${(100 * correct / count).toFixed(1)}% ` +
      `(digit height ${settings.digitHeight}, pen ${settings.penWidth}, edge ` +
      `${settings.edgeWidth}, gap ${settings.digitGap})`,
  );
  if (values.png) {
    const shown = Math.min(count, 16);
    await writeFileAtomic(
      values.png,
      await encodePng(images.subarray(0, shown * IMAGE_SIZE), IMAGE_WIDTH, IMAGE_HEIGHT * shown),
    );
    console.log(`the first ${shown} redrawn samples: ${values.png}`);
  }
}

if (import.meta.main) await runMain("drawing_accuracy", main);
