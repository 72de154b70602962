/**
 * Sweep tests on a tiny generated data set (100 images per course file, 64 test images), CNN
 * regressor only, one batch of 64 training images per epoch: every run trains for real, in
 * seconds. VGG runs are pointed at a missing weights file, so they must come out as skipped.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureDataset } from "../lib/data/generate.ts";
import { collectResults, writeReport } from "../lib/results/report.ts";
import type { EpochRecord } from "../lib/training/train.ts";
import { readRunRecord, type RunRecord } from "../lib/results/record.ts";
import { mergeSweeps } from "../lib/sweep/merge.ts";
import {
  parseShard,
  PRESETS,
  resolveConfig,
  selectShard,
  type SweepConfig,
  sweepGrid,
} from "../lib/sweep/config.ts";
import { runSweep, type SweepOptions, type SweepSummary } from "../lib/sweep/run.ts";

const ROOT = await Deno.makeTempDir({ prefix: "digitsum_sweep_test_" });
const DATA = join(ROOT, "data");
const CLI = new URL("../cli/sweep.ts", import.meta.url).pathname;
const quiet = () => {};

// Removed when this module's tests end, whichever of them ran (`--filter` included).
globalThis.addEventListener("unload", () => Deno.removeSync(ROOT, { recursive: true }));

/** Where VGG's weights are looked for: a missing file, so VGG is skipped whatever is installed. */
const NO_VGG_WEIGHTS = { DIGITSUM_VGG_WEIGHTS: join(ROOT, "no_such_weights.safetensors") };

/** `runSweep` with VGG's weights missing (the variable is restored afterwards). */
async function sweep(config: SweepConfig, options: SweepOptions = {}): Promise<SweepSummary> {
  const [name, missing] = Object.entries(NO_VGG_WEIGHTS)[0];
  const before = Deno.env.get(name);
  Deno.env.set(name, missing);
  try {
    return await runSweep(config, { log: quiet, progress: false, ...options });
  } finally {
    if (before === undefined) Deno.env.delete(name);
    else Deno.env.set(name, before);
  }
}

let dataReady: Promise<unknown> | undefined;
function data(): Promise<unknown> {
  dataReady ??= ensureDataset(DATA, { imagesPerFile: 100, testCount: 64 });
  return dataReady;
}

/** A tiny sweep: the quick preset's shape, shrunk to one batch per epoch. */
function tiny(out: string, overrides: Partial<SweepConfig> = {}): SweepConfig {
  return resolveConfig({
    models: ["cnn-regressor", "vgg-regressor"],
    seeds: [0, 1],
    limit: 64,
    dataDir: DATA,
    backend: "wasm",
    out: join(ROOT, out),
    ...overrides,
  }, "quick");
}

let unsharded: Promise<SweepConfig> | undefined;
/** One finished tiny sweep, shared by the tests that only read it. */
function unshardedSweep(): Promise<SweepConfig> {
  unsharded ??= (async () => {
    await data();
    const config = tiny("unsharded");
    await sweep(config);
    await writeReport(config.out, { log: quiet, png: false });
    return config;
  })();
  return unsharded;
}

/** Cells of the Markdown table under `## <title>`: rows of strings, header included. */
function markdownTable(markdown: string, title: string): string[][] {
  const start = markdown.indexOf(`## ${title}\n`);
  assert.ok(start >= 0, `no '## ${title}' section`);
  const lines = markdown.slice(start).split("\n").slice(2);
  const rows: string[][] = [];
  for (const line of lines) {
    if (!line.startsWith("|")) break;
    if (line.startsWith("|---")) continue;
    rows.push(line.split("|").slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(path)) as T;
}

/** History without wall times (which differ between runs). */
function numbers(history: readonly EpochRecord[]): Array<[number, number, number]> {
  return history.map((r) => [r.epoch, r.trainLoss, r.valAccuracy]);
}

Deno.test("resolveConfig() applies defaults, then the preset, then flags, and validates", () => {
  const study = resolveConfig();
  assert.deepEqual(study.models, ["cnn-regressor", "cnn-classifier", "vgg-regressor"]);
  assert.deepEqual(study.seeds, [0, 10, 42]);
  assert.equal(study.epochs, 15);
  assert.equal(study.limit, null);
  const quick = resolveConfig({ epochs: 2 }, "quick");
  assert.equal(quick.limit, PRESETS.quick.overrides.limit);
  assert.equal(quick.out, PRESETS.quick.overrides.out);
  assert.equal(quick.epochs, 2, "flags win over the preset");
  assert.throws(() => resolveConfig({ models: ["mlp"] }), /Unknown model 'mlp': expected one of/);
  assert.throws(() => resolveConfig({ seeds: [1, 1] }), /Seeds listed twice/);
  assert.throws(() => resolveConfig({ epochs: 0 }), /epochs must be a positive integer, got 0/);
  assert.throws(() => resolveConfig({}, "fast"), /Unknown preset 'fast': expected one of quick/);
});

Deno.test("selectShard() splits the grid into disjoint parts that cover it", () => {
  const grid = sweepGrid(resolveConfig({ seeds: [0, 10, 42, 7] }));
  const parts = [1, 2, 3, 4, 5].map((index) => selectShard(grid, { index, count: 5 }));
  const keys = parts.flat().map((r) => r.key);
  assert.equal(keys.length, grid.length);
  assert.deepEqual(new Set(keys), new Set(grid.map((r) => r.key)));
  assert.deepEqual(parts[1].map((r) => r.key), [
    "cnn-regressor_10",
    "cnn-classifier_42",
    "vgg-regressor_7",
  ]);
  assert.deepEqual(parseShard("2/5"), { index: 2, count: 5 });
  assert.throws(() => parseShard("0/3"), /--shard must be i\/n with 1 <= i <= n/);
  assert.throws(() => parseShard("4/3"), /got '4\/3'/);
  assert.throws(() => parseShard("x"), /got 'x'/);
});

Deno.test("runSweep() + writeReport() give tables that equal the runs' result.json", async () => {
  const config = await unshardedSweep();
  const markdown = await Deno.readTextFile(join(config.out, "RESULTS.md"));
  const results = await readJson<{ runs: Array<{ key: string; status: string }> }>(
    join(config.out, "results.json"),
  );
  assert.deepEqual(
    results.runs.map((r) => [r.key, r.status]),
    [["cnn-regressor_0", "done"], ["cnn-regressor_1", "done"], ["vgg-regressor_0", "skipped"], [
      "vgg-regressor_1",
      "skipped",
    ]],
  );
  const splits = {
    "Validation Accuracy": "val",
    "Training Accuracy": "train",
    "Held-out Test Accuracy": "test",
  } as const;
  for (const [title, split] of Object.entries(splits)) {
    const table = markdownTable(markdown, title);
    assert.deepEqual(table[0], ["Seed", "CNN Regressor", "VGG Regressor"]);
    const values: number[] = [];
    for (const [row, seed] of [[1, 0], [2, 1]]) {
      const record = (await readRunRecord(join(config.out, "runs", `cnn-regressor_${seed}`)))!;
      const accuracy = record.accuracy![split]!.accuracy;
      values.push(accuracy);
      assert.equal(table[row][0], String(seed));
      assert.equal(table[row][1], `${accuracy.toFixed(2)}%`, `${title}, seed ${seed}`);
      assert.equal(table[row][2], "skipped");
    }
    const mean = (values[0] + values[1]) / 2;
    const std = Math.abs(values[0] - values[1]) / Math.SQRT2;
    assert.equal(table[3][1], `${mean.toFixed(2)} ± ${std.toFixed(2)}%`);
  }
  assert.match(markdown, /VGG11 weights not found at .*deno task weights vgg11/);
  // Histories on disk match the records; the records' epochs match the configuration.
  for (const seed of [0, 1]) {
    const dir = join(config.out, "runs", `cnn-regressor_${seed}`);
    const record = (await readRunRecord(dir))!;
    const history = await readJson<{ history: EpochRecord[] }>(join(dir, "history.json"));
    assert.deepEqual(history.history, record.history);
    assert.equal(record.history!.length, config.epochs);
    assert.equal(record.config.limit, 64);
    assert.ok(await Deno.stat(join(dir, "checkpoint", "model.json")));
    await assert.rejects(() => Deno.stat(join(dir, "state")), Deno.errors.NotFound);
    const predictions = await readJson<{ predictions: number[]; labels: number[] }>(
      join(dir, "val_predictions.json"),
    );
    const correct = predictions.predictions.filter((p, i) => p === predictions.labels[i]).length;
    assert.equal(correct, record.accuracy!.val.correct);
  }
  // The report opens offline: inline SVG figures, no script or external resource.
  const html = await Deno.readTextFile(join(config.out, "report.html"));
  assert.ok((html.match(/<svg /g) ?? []).length >= 4, "figures are inline SVG");
  assert.ok(html.includes("data:image/png;base64,"), "sample images are inline PNG");
  assert.doesNotMatch(html, /<script|<link[^>]+stylesheet|src="http/);
  for (
    const figure of ["accuracy", "curves_cnn-regressor_loss", "confusion_best", "samples_best"]
  ) {
    assert.ok(await Deno.stat(join(config.out, "figures", `${figure}.svg`)), figure);
  }
});

Deno.test("runSweep() refuses a changed configuration and leaves finished runs alone", async () => {
  const config = await unshardedSweep();
  const resultPath = join(config.out, "runs", "cnn-regressor_0", "result.json");
  const before = await Deno.readTextFile(resultPath);
  await assert.rejects(
    () => sweep({ ...config, epochs: config.epochs + 1 }),
    /Refusing to write into .*unsharded: [\s\S]*cnn-regressor_0\/config.json records a run with another configuration \(epochs differs: 1 vs 2\)[\s\S]*another --out/,
  );
  assert.equal(await Deno.readTextFile(resultPath), before);
  // Same configuration again: nothing to train, nothing rewritten.
  const again = await sweep(config);
  assert.deepEqual(again.finished, []);
  assert.deepEqual(again.alreadyDone, ["cnn-regressor_0", "cnn-regressor_1"]);
  assert.equal(await Deno.readTextFile(resultPath), before);
});

Deno.test("sweep shards merge to the same tables as an unsharded sweep", async () => {
  const config = await unshardedSweep();
  const shards = [1, 2].map((index) => tiny(`shard${index}`));
  for (const [i, shard] of shards.entries()) {
    const summary = await sweep(shard, { shard: { index: i + 1, count: 2 } });
    assert.equal(summary.selected.length, 2);
  }
  const out = join(ROOT, "merged");
  await mergeSweeps(shards.map((s) => s.out), out, { log: quiet });
  await writeReport(out, { log: quiet, png: false });
  const merged = await collectResults(out);
  const single = await collectResults(config.out);
  assert.deepEqual(merged.tables, single.tables);
  assert.deepEqual(
    merged.runs.map((r) => [r.key, r.status, numbers(r.history)]),
    single.runs.map((r) => [r.key, r.status, numbers(r.history)]),
  );
  // A conflicting duplicate (same run, other result) is refused.
  const forged = join(ROOT, "forged");
  await mergeSweeps([shards[0].out], forged, { log: quiet });
  const path = join(forged, "runs", "cnn-regressor_0", "result.json");
  const record = await readJson<RunRecord>(path);
  record.accuracy!.val.accuracy += 1;
  await Deno.writeTextFile(path, JSON.stringify(record));
  await assert.rejects(
    () => mergeSweeps([forged, shards[0].out], join(ROOT, "merged2"), { log: quiet }),
    /same run finished with different results:\n {2}cnn-regressor_0: .*accuracies differ/,
  );
});

/** Start the sweep CLI on a 4-epoch single run. */
function spawnSweep(out: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "--models",
      "cnn-regressor",
      "--seeds",
      "3",
      "--epochs",
      "4",
      "--limit",
      "64",
      "--backend",
      "wasm",
      "--data-dir",
      DATA,
      "--out",
      out,
      "--no-png",
    ],
    env: { DIGITSUM_VGG_WEIGHTS: join(ROOT, "none") },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Epochs saved in a run's resumable state. */
async function savedEpochs(dir: string): Promise<number> {
  try {
    const meta = await readJson<{ history: unknown[] }>(join(dir, "state", "digitsum.json"));
    return meta.history.length;
  } catch {
    return 0;
  }
}

async function waitForEpochs(dir: string, epochs: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await savedEpochs(dir)) < epochs) {
    if (Date.now() > deadline) throw new Error(`no epoch ${epochs} state in ${dir} after 120 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("sweep CLI resumes after SIGINT and SIGKILL to the numbers of an uninterrupted run", async () => {
  await data();
  const out = join(ROOT, "interrupted");
  const dir = join(out, "runs", "cnn-regressor_3");
  const decoder = new TextDecoder();

  // 1. Ctrl-C after epoch 1: stops after the current epoch, says how to resume, exit 130.
  const first = spawnSweep(out);
  await waitForEpochs(dir, 1);
  first.kill("SIGINT");
  const firstOut = await first.output();
  const firstText = decoder.decode(firstOut.stdout) + decoder.decode(firstOut.stderr);
  assert.equal(firstOut.code, 130, firstText);
  assert.match(firstText, /Resume with the same command: deno task sweep/);
  const afterInterrupt = await savedEpochs(dir);
  assert.ok(afterInterrupt >= 1 && afterInterrupt < 4, `${afterInterrupt} epochs saved`);
  assert.equal(await readRunRecord(dir), undefined);

  // 2. Resume, then SIGKILL as soon as one more epoch is saved.
  const second = spawnSweep(out);
  await waitForEpochs(dir, afterInterrupt + 1);
  second.kill("SIGKILL");
  await second.output();
  const afterKill = await savedEpochs(dir);
  assert.ok(afterKill < 4 && (await readRunRecord(dir)) === undefined, "killed before the end");

  // 3. Resume to the end.
  const third = await spawnSweep(out).output();
  assert.equal(third.code, 0, decoder.decode(third.stderr));
  const log = await Deno.readTextFile(join(dir, "log.txt"));
  assert.match(log, new RegExp(`Resuming CNN Regressor seed 3 after epoch ${afterKill}/4`));

  // Reference: the same run without interruption, in-process.
  const reference = resolveConfig({
    models: ["cnn-regressor"],
    seeds: [3],
    epochs: 4,
    limit: 64,
    backend: "wasm",
    dataDir: DATA,
    out: join(ROOT, "uninterrupted"),
  });
  await sweep(reference);
  const resumed = (await readRunRecord(dir))!;
  const straight = (await readRunRecord(join(reference.out, "runs", "cnn-regressor_3")))!;
  assert.equal(resumed.status, "done");
  assert.deepEqual(numbers(resumed.history!), numbers(straight.history!));
  assert.deepEqual(resumed.accuracy, straight.accuracy);
  const history = await readJson<{ history: EpochRecord[] }>(join(dir, "history.json"));
  assert.deepEqual(numbers(history.history), numbers(straight.history!));
});

Deno.test("sweep CLI rejects bad flags with a clear message", async () => {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "--epochs", "two"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(run.code, 1);
  assert.match(
    new TextDecoder().decode(run.stderr),
    /--epochs must be a positive integer, got 'two'/,
  );
});

Deno.test("runConfigFor() keeps a model's own recipe unless the sweep changes the study's values", async () => {
  const { runConfigFor, SWEEP_DEFAULTS } = await import("../lib/sweep/config.ts");
  const { SUMNET_RECIPE } = await import("../lib/models/sumnet/mod.ts");
  const study = runConfigFor(SWEEP_DEFAULTS, "cnn-regressor", 10);
  assert.equal(study.epochs, 15);
  assert.equal(study.learningRate, 1e-3);
  assert.equal(study.seed, 10);
  const sumnet = runConfigFor(SWEEP_DEFAULTS, "sumnet", 0);
  assert.equal(sumnet.epochs, SUMNET_RECIPE.epochs);
  assert.equal(sumnet.learningRate, SUMNET_RECIPE.learningRate);
  const changed = runConfigFor({ ...SWEEP_DEFAULTS, epochs: 3, learningRate: 5e-4 }, "sumnet", 0);
  assert.equal(changed.epochs, 3);
  assert.equal(changed.learningRate, 5e-4);
});

Deno.test("ownRecipeLine() names the models that keep their own epochs, and only those", async () => {
  const { SWEEP_DEFAULTS } = await import("../lib/sweep/config.ts");
  const { ownRecipeLine } = await import("../lib/results/report.ts");
  const models = [
    { kind: "cnn-regressor", title: "CNN Regressor" },
    { kind: "sumnet", title: "SumNet" },
  ];
  assert.equal(
    ownRecipeLine(SWEEP_DEFAULTS, models),
    "Own recipe (see docs/BEYOND.md): SumNet: 4 epochs, lr 0.001.",
  );
  assert.equal(ownRecipeLine(SWEEP_DEFAULTS, models.slice(0, 1)), undefined);
  // A sweep that sets its own epochs and rate applies them to every model.
  assert.equal(
    ownRecipeLine({ ...SWEEP_DEFAULTS, epochs: 2, learningRate: 5e-4 }, models),
    undefined,
  );
});
