/**
 * `deno task evaluate --model trained_models/<dir> --images X.npy --labels Y.npy`
 *
 * Scores a checkpoint on any pair of course-format `.npy` files (N x 40 x 168 uint8 images and N
 * sums 0..36). The images are read a batch at a time, so memory stays bounded for files of any
 * size. The last line is exactly `accuracy=NN.NN` (percent of images whose sum is right).
 *
 * `deno task evaluate --model DIR --conditions data/conditions` scores the checkpoint on every
 * test condition of a set made by `deno task generate --conditions` (lib/data/conditions.ts; for
 * reporting only, never for training or tuning): a table of exact-sum accuracy per condition with
 * its count and 95% interval, and for SumNet checkpoints the per-digit read-out against the placed
 * digits (per position, and by ink gap and ink height). It is printed and written to `--out`
 * (default `<conditions dir>/evaluation_<model folder name>`) `.json` and `.md`. The last line is
 * `conditions=N lowest_readable=NAME accuracy=NN.NN`.
 */
import { parseArgs } from "node:util";
import { basename, join } from "node:path";
import { readConditions } from "../lib/data/conditions.ts";
import { writeJsonAtomic, writeTextAtomic } from "../lib/io/fsutil.ts";
import {
  conditionsMarkdown,
  type ConditionsReport,
  evaluateConditions,
  poolConditions,
} from "../lib/results/readout.ts";
import { CELL_LOGITS_LAYER } from "../lib/models/sumnet/core.ts";
import { type BackendName, initBackend, parseBackendName } from "../lib/runtime/backend.ts";
import { checkImageModel, checkpointTask, loadCheckpoint } from "../lib/training/checkpoint.ts";
import { BATCH_SIZE } from "../lib/constants.ts";
import { loadNpyPairLoader } from "../lib/data/loader.ts";
import { evaluateAccuracy } from "../lib/training/train.ts";
import { parseIntFlag, runMain } from "../lib/cli/args.ts";

const USAGE = `Usage: deno task evaluate --model DIR --images X.npy --labels Y.npy [options]
       deno task evaluate --model DIR --conditions DIR [--out PREFIX] [--limit N] [options]

  --model DIR       checkpoint directory
  --images X.npy    uint8 images [N, 40, 168]
  --labels Y.npy    their sums [N] (integers 0..36, any supported dtype)
  --conditions DIR  score every test condition of DIR (deno task generate --conditions DIR)
  --out PREFIX      with --conditions: write PREFIX.json and PREFIX.md
                    (default <conditions dir>/evaluation_<model folder name>)
  --limit N         with --conditions: only the first N images of each (whole batches)
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
      conditions: { type: "string" },
      out: { type: "string" },
      limit: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.model && values.conditions !== undefined && !values.help) {
    await evaluateOnConditions(values.model, values.conditions, {
      backend: values.backend === undefined ? undefined : parseBackendName(values.backend),
      batchSize: parseIntFlag(values["batch-size"], "batch-size") ?? BATCH_SIZE,
      limit: parseIntFlag(values.limit, "limit"),
      out: values.out,
    });
    return;
  }
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

/** `--conditions DIR`: the table per condition (and SumNet's read-out), printed and written. */
async function evaluateOnConditions(
  modelDir: string,
  dir: string,
  options: { backend?: BackendName; batchSize: number; limit?: number; out?: string },
): Promise<void> {
  // The set first (a missing or altered set is reported before the model is loaded).
  const conditions = await readConditions(dir);
  const info = await initBackend(options.backend);
  const { model, meta } = await loadCheckpoint(modelDir);
  checkImageModel(model, modelDir);
  const task = checkpointTask(meta.kind, model);
  const readout = model.layers.some((layer) => layer.name === CELL_LOGITS_LAYER);
  console.log(
    `Model: ${modelDir} (${meta.kind}, ${task}${readout ? ", with the per-digit read-out" : ""})`,
  );
  const results = await evaluateConditions(model, conditions, {
    task,
    batchSize: options.batchSize,
    readout,
    limit: options.limit,
    log: (line) => console.log(line),
  });
  const first = conditions[0].manifest.condition;
  const report: ConditionsReport = {
    model: modelDir,
    kind: meta.kind,
    backend: `${info.name} (${info.threads} thread${info.threads === 1 ? "" : "s"})`,
    conditionsDir: dir,
    seed: first.seed,
    count: options.limit === undefined ? first.count : results[0].sums.total,
    command: ["deno task evaluate", ...Deno.args].join(" "),
    conditions: results,
    pooled: poolConditions(results),
  };
  const markdown = conditionsMarkdown(report);
  console.log(`\n${markdown}`);
  const out = options.out ?? join(dir, `evaluation_${basename(modelDir.replace(/\/+$/, ""))}`);
  await writeJsonAtomic(`${out}.json`, report);
  await writeTextAtomic(`${out}.md`, markdown);
  console.log(`wrote ${out}.json and ${out}.md`);
  const readable = results.filter((r) => r.readable);
  const lowest = readable.reduce((a, b) => (b.accuracy < a.accuracy ? b : a), readable[0]);
  console.log(
    `conditions=${results.length} lowest_readable=${lowest?.name ?? "-"} ` +
      `accuracy=${(lowest?.accuracy ?? 0).toFixed(2)}`,
  );
}

if (import.meta.main) await runMain("evaluate", main);
