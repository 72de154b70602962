/**
 * `deno run -A tools/set_test_views.ts <checkpoint> [--views default|rolls] [--rescale default|none]
 *   [--clean default|none] [--dry-run]`
 *
 * Gives a trained SumNet checkpoint other test-time views without touching its weights: the model
 * is built again with {@linkcode DEFAULT_TEST_VIEWS} (nine views) or {@linkcode ROLL_TEST_VIEWS}
 * (the five horizontal rolls of the fourth round and before), and with
 * {@linkcode DEFAULT_RESCALE} (unusual digit heights rescaled first) or without it, and with
 * {@linkcode DEFAULT_CLEANING} (noisy images cleaned first) or without it, the weights are copied
 * over, the
 * validation, training (first 6,016) and held-out test splits are scored again the way
 * `deno task train` scores them, and the checkpoint is written back atomically with those scores
 * in `digitsum.json` (`accuracy`) and the scores it had before in `accuracyBefore`. The views
 * only change inference: `weights.bin` stays byte for byte the same. `--dry-run` only prints the
 * scores.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runMain } from "../lib/cli/args.ts";
import { registerCustomLayers } from "../lib/models/mod.ts";
import {
  buildSumNet,
  DEFAULT_CLEANING,
  DEFAULT_RESCALE,
  DEFAULT_TEST_VIEWS,
  ROLL_TEST_VIEWS,
} from "../lib/models/sumnet/mod.ts";
import { initBackend } from "../lib/runtime/backend.ts";
import { loadCheckpoint, saveCheckpoint } from "../lib/training/checkpoint.ts";
import { type RunConfig, scoreSplits } from "../lib/training/experiment.ts";

const USAGE = "Usage: deno run -A tools/set_test_views.ts <checkpoint> [--views default|rolls] " +
  "[--rescale default|none] [--clean default|none] [--dry-run]";

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      views: { type: "string", default: "default" },
      rescale: { type: "string", default: "default" },
      clean: { type: "string", default: "default" },
      "dry-run": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const dir = positionals[0];
  const views = { default: DEFAULT_TEST_VIEWS, rolls: ROLL_TEST_VIEWS }[values.views!];
  if (!views) throw new Error(`--views: expected default or rolls, got '${values.views}'`);
  const rescale = { default: DEFAULT_RESCALE, none: null }[values.rescale!];
  if (rescale === undefined) {
    throw new Error(`--rescale: expected default or none, got '${values.rescale}'`);
  }
  const clean = { default: DEFAULT_CLEANING, none: null }[values.clean!];
  if (clean === undefined) {
    throw new Error(`--clean: expected default or none, got '${values.clean}'`);
  }
  const backend = await initBackend();
  registerCustomLayers();
  const { model: trained, meta } = await loadCheckpoint(dir);
  if (!trained.layers.some((layer) => layer.getClassName() === "TestViews")) {
    throw new Error(
      `Cannot set test views of ${dir}: its ${meta.kind} model has no TestViews layer`,
    );
  }
  if (!meta.config) throw new Error(`Cannot score ${dir}: its digitsum.json records no run config`);
  const model = buildSumNet({ testViews: views, rescale, clean });
  model.setWeights(trained.getWeights());
  console.log(
    `${dir}: ${views.length} test-time views ${JSON.stringify(views)}, rescale ${
      JSON.stringify(rescale)
    }, clean ${JSON.stringify(clean)}`,
  );
  // The splits scored exactly as `deno task train` scores them at the end of its run.
  const accuracy = await scoreSplits(model, meta.config as RunConfig);
  console.log(`on ${backend.name}; before: ${JSON.stringify(meta.accuracy)}`);
  if (values["dry-run"]) return;
  await saveCheckpoint(dir, model, {
    ...meta,
    accuracy,
    accuracyBefore: meta.accuracyBefore ?? meta.accuracy,
  });
  console.log(`Wrote ${dir}`);
}

if (import.meta.main) await runMain("set_test_views", main);
