/**
 * `deno task train --model cnn-regressor --seed 42 --epochs 15 [--limit N]`
 *
 * Trains one model as the study did, prints the study's lines and saves the checkpoint to
 * `trained_models/<prefix>_<seed>/`.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { DEFAULT_MODELS_DIR } from "../lib/constants.ts";
import { runExperiment, studyConfig } from "../lib/experiment.ts";
import { modelInfo, modelKinds } from "../lib/models.ts";
import { formatDuration } from "../lib/progress.ts";
import { runMain } from "../lib/cli.ts";

const USAGE = `Usage: deno task train --model <kind> [options]

  --model KIND        one of: ${modelKinds().join(", ")}
  --seed N            random seed (default 42)
  --epochs N          epochs (default 15; a model's own recipe may differ, e.g. sumnet)
  --limit N           train on the first N training images only (quick runs)
  --test-limit N      score only the first N held-out test images (default all 10,000)
  --batch-size N      batch size (default 64)
  --lr X              Adam learning rate (default 1e-3, or the model's recipe)
  --backend NAME      auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
  --data-dir DIR      directory of the .npy files (default data)
  --out DIR           checkpoint parent directory (default trained_models)
`;

function intFlag(value: string | undefined, name: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`--${name} must be a non-negative integer, got '${value}'`);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      seed: { type: "string" },
      epochs: { type: "string" },
      limit: { type: "string" },
      "test-limit": { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      backend: { type: "string" },
      "data-dir": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.model) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const info = modelInfo(values.model);
  const config = studyConfig(info.kind, {
    seed: intFlag(values.seed, "seed", 42),
    epochs: intFlag(values.epochs, "epochs", studyConfig(info.kind).epochs),
    limit: intFlag(values.limit, "limit"),
    batchSize: intFlag(values["batch-size"], "batch-size", 64),
    ...(values.lr ? { learningRate: Number(values.lr) } : {}),
    ...(values.backend ? { backend: values.backend } : {}),
    ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
  });
  const checkpointDir = join(values.out ?? DEFAULT_MODELS_DIR, `${info.prefix}_${config.seed}`);
  console.log(`Config: ${JSON.stringify(config)}`);
  const result = await runExperiment(config, {
    checkpointDir,
    testLimit: intFlag(values["test-limit"], "test-limit"),
  });
  const rate = result.history.length
    ? result.history.reduce((n, r) => n + r.trainImagesPerSecond, 0) / result.history.length
    : 0;
  console.log(
    `Saved ${checkpointDir} (${result.params.toLocaleString("en-US")} parameters); ` +
      `${formatDuration(result.seconds)} total, ${
        rate.toFixed(1)
      } training images/s on ${result.backend.name}`,
  );
}

if (import.meta.main) await runMain("train", main);
