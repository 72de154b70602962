/**
 * `deno task evaluate --model trained_models/<dir> --images X.npy --labels Y.npy`
 *
 * Scores a checkpoint on any pair of course-format `.npy` files (N x 40 x 168 uint8 images and N
 * sums 0..36). The images are read a batch at a time, so memory stays bounded for files of any
 * size. The last line is exactly `accuracy=NN.NN` (percent of images whose sum is right).
 */
import { parseArgs } from "node:util";
import { initBackend, parseBackendName } from "../lib/runtime/backend.ts";
import { checkImageModel, checkpointTask, loadCheckpoint } from "../lib/training/checkpoint.ts";
import { BATCH_SIZE } from "../lib/constants.ts";
import { loadNpyPairLoader } from "../lib/data/loader.ts";
import { evaluateAccuracy } from "../lib/training/train.ts";
import { parseIntFlag, runMain } from "../lib/cli/args.ts";

const USAGE = `Usage: deno task evaluate --model DIR --images X.npy --labels Y.npy [options]

  --model DIR       checkpoint directory
  --images X.npy    uint8 images [N, 40, 168]
  --labels Y.npy    their sums [N] (integers 0..36, any supported dtype)
  --batch-size N    images per forward pass (default ${BATCH_SIZE})
  --backend NAME    auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
`;

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
  const batchSize = parseIntFlag(values["batch-size"], "batch-size") ?? BATCH_SIZE;
  const backend = values.backend === undefined ? undefined : parseBackendName(values.backend);
  // The data files first (a bad file is reported before the model is loaded).
  const loader = await loadNpyPairLoader(values.images, values.labels, batchSize);
  try {
    if (loader.size === 0) throw new Error(`Cannot use ${values.images}: it holds no images`);
    await initBackend(backend);
    const { model, meta } = await loadCheckpoint(values.model);
    checkImageModel(model, values.model);
    const task = checkpointTask(meta.kind, model);
    const result = await evaluateAccuracy(model, loader, task);
    console.log(`Model: ${values.model} (${meta.kind}, ${task})`);
    console.log(`Images: ${values.images} (${result.total})`);
    console.log(`Correct: ${result.correct}/${result.total}`);
    console.log(`accuracy=${result.accuracy.toFixed(2)}`);
  } finally {
    loader.close();
  }
}

if (import.meta.main) await runMain("evaluate", main);
