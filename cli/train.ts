/**
 * `deno task train --model cnn-regressor --seed 42 --epochs 15 [--limit N]`
 *
 * Trains one model as the study did, prints the study's lines and saves the checkpoint to
 * `trained_models/<prefix>_<seed>/`.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { parseSeedFlag, runMain } from "../lib/cli/args.ts";
import {
  parseTrainingFlags,
  TRAINING_FLAGS,
  trainingFlagsHelp,
} from "../lib/cli/training_flags.ts";
import { BATCH_SIZE, DEFAULT_MODELS_DIR } from "../lib/constants.ts";
import { modelInfo, modelKinds } from "../lib/models/mod.ts";
import { meanRate } from "../lib/results/stats.ts";
import { formatDuration } from "../lib/runtime/progress.ts";
import { runExperiment, studyConfig } from "../lib/training/experiment.ts";

const USAGE = `Usage: deno task train --model <kind> [options]

  --model KIND        one of: ${modelKinds().join(", ")}
  --seed N            random seed (default 42)
  --hold-out-val-digits
                      SumNet kinds: require that stage 1 never sees the MNIST digits of the
                      validation composites (an error unless digitsum's generator wrote the data;
                      by default they are kept out whenever its MANIFEST.json says which they are)
  --keep-val-digits   SumNet kinds: let stage 1 paste them too (the recipe before December;
                      docs/BEYOND.md)
${
  trainingFlagsHelp({
    epochs: "15; a model's own recipe may differ, e.g. sumnet",
    limit: "train on the first N training images only (quick runs)",
    batchSize: BATCH_SIZE,
    learningRate: "1e-3, or the model's recipe",
    dataDir: "data",
    out: "checkpoint parent directory (default trained_models)",
  })
}
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      seed: { type: "string" },
      "hold-out-val-digits": { type: "boolean" },
      "keep-val-digits": { type: "boolean" },
      ...TRAINING_FLAGS,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.model) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const info = modelInfo(values.model);
  // The same flags as `deno task sweep`, read by the same parser (lib/cli/training_flags.ts).
  const flags = parseTrainingFlags(values);
  const recipe = studyConfig(info.kind);
  const config = studyConfig(info.kind, {
    seed: parseSeedFlag(values.seed) ?? 42,
    epochs: flags.epochs ?? recipe.epochs,
    limit: flags.limit ?? undefined,
    batchSize: flags.batchSize ?? BATCH_SIZE,
    ...(flags.learningRate !== undefined ? { learningRate: flags.learningRate } : {}),
    ...(flags.backend ? { backend: flags.backend } : {}),
    ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
  });
  if (values["hold-out-val-digits"] && values["keep-val-digits"]) {
    throw new Error("--hold-out-val-digits and --keep-val-digits contradict each other");
  }
  // Neither flag: the recipe's default (kept out when the data folder's manifest says which).
  const holdOut = values["hold-out-val-digits"]
    ? true
    : values["keep-val-digits"]
    ? false
    : undefined;
  if (holdOut !== undefined && !info.recipe?.prepare) {
    const flag = holdOut ? "--hold-out-val-digits" : "--keep-val-digits";
    throw new Error(`${flag}: ${info.kind} has no pretraining stage to keep them from`);
  }
  const checkpointDir = join(flags.out ?? DEFAULT_MODELS_DIR, `${info.prefix}_${config.seed}`);
  console.log(`Config: ${JSON.stringify(config)}`);
  const result = await runExperiment(config, {
    checkpointDir,
    testLimit: flags.testLimit ?? undefined,
    ...(holdOut !== undefined ? { prepareOptions: { holdOutValidationDigits: holdOut } } : {}),
  });
  const rate = result.history.length ? meanRate(result.history) : 0;
  console.log(
    `Saved ${checkpointDir} (${result.params.toLocaleString("en-US")} parameters); ` +
      `${formatDuration(result.seconds)} total, ${
        rate.toFixed(1)
      } training images/s on ${result.backend.name}`,
  );
}

if (import.meta.main) await runMain("train", main);
