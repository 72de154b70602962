/**
 * Predicted sums of raw images with a trained model (`deno task predict`), and SumNet's
 * explanation of a reading as printed lines.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { BATCH_SIZE, IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_DIGITS } from "../constants.ts";
import type { Task } from "../models/registry.ts";
import { CELL_LOGITS_LAYER, explainBatch, type Explanation } from "../models/sumnet/core.ts";
import { digitsSeen } from "../models/sumnet/seen.ts";
import { predictBatch } from "./train.ts";

/**
 * One explanation as printed lines (after the sum line). Notes say when the model cleaned a noisy
 * image or rescaled its digits before reading, and when SumNet sees about another number of digits
 * than four ({@linkcode digitsSeen}, rounded), as the browser page does.
 */
export function formatExplanation(explanation: Explanation): string[] {
  const lines = [
    `  digits: ${explanation.digits.map((d) => d.digit).join(" + ")} = ${explanation.sum}`,
  ];
  for (const d of explanation.digits) {
    const other = d.runnerUp.digit === null ? "nothing" : String(d.runnerUp.digit);
    lines.push(
      `  ${d.digit} at columns ${d.columns[0]}-${d.columns[1] - 1} (centre ${d.centre}): ` +
        `p ${d.probability.toFixed(3)}, next ${other} ${d.runnerUp.probability.toFixed(3)}`,
    );
  }
  const prepared = explanation.prepared;
  if (prepared?.cleaned) {
    lines.push("  note: a noisy image; SumNet kept only its ink before reading it");
  }
  if (prepared && prepared.scale !== 1) {
    lines.push(
      `  note: digits of an unusual height; SumNet scaled the image ${
        prepared.scale.toFixed(2)
      }x before reading it (columns above are the image's own)`,
    );
  }
  const seen = digitsSeen(explanation);
  if (Math.round(seen) !== NUM_DIGITS) {
    lines.push(
      `  note: SumNet sees about ${Math.round(seen)} digits (${seen.toFixed(2)}); ` +
        `the sum assumes four`,
    );
  }
  return lines;
}

/** Options of {@linkcode predictImages}. */
export interface PredictOptions {
  /** Compute SumNet explanations too. */
  explain?: boolean;
  /** Images per forward pass (default 64). */
  batchSize?: number;
}

/**
 * Predicted sums (and explanations) for `[n, 40, 168]` uint8 images.
 *
 * @param model a loaded checkpoint's model
 * @param pixels the images
 * @returns sums, and explanations when asked for (SumNet only)
 */
export async function predictImages(
  model: tf.LayersModel,
  pixels: Uint8Array,
  options: PredictOptions & { task: Task },
): Promise<{ sums: number[]; explanations?: Explanation[] }> {
  const count = pixels.length / IMAGE_SIZE;
  const batchSize = options.batchSize ?? BATCH_SIZE;
  const sums: number[] = [];
  const explanations: Explanation[] = [];
  for (let start = 0; start < count; start += batchSize) {
    const size = Math.min(batchSize, count - start);
    const x = tf.tidy(() =>
      tf.tensor4d(
        Float32Array.from(pixels.subarray(start * IMAGE_SIZE, (start + size) * IMAGE_SIZE)),
        [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1],
      ).div(255)
    ) as tf.Tensor4D;
    try {
      if (options.explain) {
        const batch = await explainBatch(model, x);
        explanations.push(...batch);
        sums.push(...batch.map((e) => e.sum));
      } else {
        sums.push(...(await predictBatch(model, x, options.task)));
      }
    } finally {
      x.dispose();
    }
  }
  return options.explain ? { sums, explanations } : { sums };
}

/** Whether a model has SumNet's per-cell read-out. */
export function hasCells(model: tf.LayersModel): boolean {
  return model.layers.some((layer) => layer.name === CELL_LOGITS_LAYER);
}
