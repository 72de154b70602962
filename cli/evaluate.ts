/**
 * `deno task evaluate --model trained_models/<dir> --images X.npy --labels Y.npy`
 *
 * Scores a checkpoint on any pair of course-format `.npy` files (N x 40 x 168 uint8 images and N
 * sums). The last line is exactly `accuracy=NN.NN` (percent of images whose sum is right).
 */
import { parseArgs } from "node:util";
import { initBackend } from "../lib/backend.ts";
import { checkpointTask, loadCheckpoint } from "../lib/checkpoint.ts";
import { BATCH_SIZE } from "../lib/constants.ts";
import { loadNpyPairLoader } from "../lib/data.ts";
import { evaluateAccuracy } from "../lib/train.ts";
import { runMain } from "../lib/cli.ts";

const USAGE =
  `Usage: deno task evaluate --model DIR --images X.npy --labels Y.npy [--backend NAME]`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      images: { type: "string" },
      labels: { type: "string" },
      backend: { type: "string" },
      "batch-size": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.model || !values.images || !values.labels) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  await initBackend(values.backend as never);
  const { model, meta } = await loadCheckpoint(values.model);
  const task = checkpointTask(meta.kind, model);
  const loader = await loadNpyPairLoader(
    values.images,
    values.labels,
    Number(values["batch-size"] ?? BATCH_SIZE),
  );
  const result = await evaluateAccuracy(model, loader, task);
  console.log(`Model: ${values.model} (${meta.kind}, ${task})`);
  console.log(`Images: ${values.images} (${result.total})`);
  console.log(`Correct: ${result.correct}/${result.total}`);
  console.log(`accuracy=${result.accuracy.toFixed(2)}`);
}

if (import.meta.main) await runMain("evaluate", main);
