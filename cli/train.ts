/**
 * `deno task train --model cnn-regressor --seed 42 --epochs 15 [--limit N]`
 *
 * Trains one model as the study did, prints the study's lines and saves the checkpoint to
 * `trained_models/<prefix>_<seed>/`.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { BATCH_SIZE, DEFAULT_MODELS_DIR } from "../lib/constants.ts";
import { runExperiment, studyConfig } from "../lib/training/experiment.ts";
import { formatDuration } from "../lib/runtime/progress.ts";
import { parseBackendName } from "../lib/runtime/backend.ts";
import {
  parseIntFlag,
  parseLimitFlag,
  parsePositiveFlag,
  parseSeedFlag,
  runMain,
} from "../lib/cli/args.ts";
import { modelInfo, modelKinds } from "../lib/models/mod.ts";

const USAGE = `Usage: deno task train --model <kind> [options]

  --model KIND        one of: ${modelKinds().join(", ")}
  --seed N            random seed (default 42)
  --epochs N          epochs (default 15; a model's own recipe may differ, e.g. sumnet)
  --limit N|all       train on the first N training images only (quick runs; default all)
  --test-limit N|all  score only the first N held-out test images (default all 10,000)
  --batch-size N      batch size (default 64)
  --lr X              Adam learning rate (default 1e-3, or the model's recipe)
  --backend NAME      auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
  --data-dir DIR      directory of the .npy files (default data)
  --out DIR           checkpoint parent directory (default trained_models)
`;

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
  // The same flags as `deno task sweep`, read by the same parsers (lib/cli.ts).
  const recipe = studyConfig(info.kind);
  const lr = parsePositiveFlag(values.lr, "lr");
  if (values.backend !== undefined) parseBackendName(values.backend);
  const config = studyConfig(info.kind, {
    seed: parseSeedFlag(values.seed) ?? 42,
    epochs: parseIntFlag(values.epochs, "epochs") ?? recipe.epochs,
    limit: parseLimitFlag(values.limit, "limit") ?? undefined,
    batchSize: parseIntFlag(values["batch-size"], "batch-size") ?? BATCH_SIZE,
    ...(lr !== undefined ? { learningRate: lr } : {}),
    ...(values.backend ? { backend: values.backend } : {}),
    ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
  });
  const testLimit = parseLimitFlag(values["test-limit"], "test-limit") ?? undefined;
  const checkpointDir = join(values.out ?? DEFAULT_MODELS_DIR, `${info.prefix}_${config.seed}`);
  console.log(`Config: ${JSON.stringify(config)}`);
  const result = await runExperiment(config, {
    checkpointDir,
    testLimit,
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
