/**
 * The notebooks: lib/notebook/' helpers, and every notebook executed headless in quick mode
 * (`DIGITSUM_QUICK=1`) through Jupyter's nbconvert and the Deno kernel, failing on any cell
 * error. Without Jupyter or the kernel the execution tests are skipped with a message, except
 * when `CI=true`, where they are required.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  accuracyBars,
  barFigure,
  describeSettings,
  describeSetups,
  digitConfusion,
  displayPath,
  errorDistances,
  heatmapFigure,
  htmlTable,
  interactiveRequested,
  InterruptLatch,
  isQuickMode,
  lineFigure,
  markdownTable,
  modelRunConfig,
  notebookSettings,
  perClassAccuracy,
  pickReadouts,
  PLOTLY_MIME,
  QUICK_EPOCHS,
  QUICK_LIMIT,
  readSweepResults,
  REPO_ROOT,
  repoPath,
  seedTable,
  showInteractive,
  showPng,
  showSvg,
  studyRunsOnRecord,
  svgSize,
  topConfusions,
} from "../lib/notebook/mod.ts";
import type { RunOutcome } from "../lib/results/record.ts";
import { studyConfig } from "../lib/training/experiment.ts";
import { studyVerdicts } from "../lib/results/verdict.ts";

const NOTEBOOKS = ["notebooks/study.ipynb", "notebooks/beyond.ipynb"];
const INSTALL_HINT = "install Jupyter with 'apt-get install jupyter-nbconvert python3-nbclient " +
  "jupyter-client python3-ipykernel' and the Deno kernel with 'deno jupyter --install'";
/** Per-cell limit for nbconvert, seconds. */
const CELL_TIMEOUT = 900;
/** Tiny cells of the late-output test (without the cell-end hook 2-6 of 40-60 went astray). */
const LATE_OUTPUT_CELLS = 60;

// ---------------------------------------------------------------------------------------------
// lib/notebook/

Deno.test("isQuickMode() reads DIGITSUM_QUICK and rejects other values", () => {
  assert.equal(isQuickMode({ DIGITSUM_QUICK: "1" }), true);
  assert.equal(isQuickMode({ DIGITSUM_QUICK: "true" }), true);
  assert.equal(isQuickMode({ DIGITSUM_QUICK: "0" }), false);
  assert.equal(isQuickMode({}), false);
  assert.throws(() => isQuickMode({ DIGITSUM_QUICK: "fast" }), /DIGITSUM_QUICK must be 1.*'fast'/);
});

Deno.test("notebookSettings() gives the study's configuration, or a small one in quick mode", () => {
  const full = notebookSettings({});
  assert.equal(full.quick, false);
  assert.equal(full.epochs, 15);
  assert.equal(full.limit, undefined);
  assert.equal(full.seed, 42);
  assert.equal(full.dataDir, join(REPO_ROOT, "data"));
  assert.equal(full.modelsDir, join(REPO_ROOT, "trained_models"));
  assert.match(describeSettings(full), /^FULL MODE/);
  // With models, each one's own recipe: SumNet's 4 epochs at a peak of 0.001, not the study's 15.
  const own = describeSettings(full, { models: ["sumnet", "cnn-regressor"] });
  assert.match(own, /sumnet: 4 epochs, batch 64, Adam lr 0\.001 \(peak of its schedule\)/);
  assert.match(own, /cnn-regressor: 15 epochs, batch 64, Adam lr 0\.001, all training images/);

  const quick = notebookSettings({ DIGITSUM_QUICK: "1", DIGITSUM_DATA_DIR: "/tmp/elsewhere" });
  assert.equal(quick.epochs, QUICK_EPOCHS);
  assert.equal(quick.limit, QUICK_LIMIT);
  assert.equal(quick.dataDir, "/tmp/elsewhere");
  assert.notEqual(quick.modelsDir, full.modelsDir, "quick runs must not replace real checkpoints");
  assert.match(describeSettings(quick), /^QUICK MODE \(DIGITSUM_QUICK=1\)/);

  const config = modelRunConfig("cnn-classifier", quick);
  assert.deepEqual(
    [config.model, config.seed, config.epochs, config.limit],
    ["cnn-classifier", 42, 1, 512],
  );
});

Deno.test("repoPath() resolves against the repository root, not the working directory", async () => {
  assert.ok(await Deno.stat(repoPath("deno.json")));
  assert.equal(repoPath("/abs/x"), "/abs/x");
  assert.equal(displayPath(repoPath("trained_models", "a")), join("trained_models", "a"));
});

Deno.test("markdownTable() and htmlTable() format numbers and reject ragged rows", () => {
  const md = markdownTable(["Seed", "CNN"], [["42", 11.7712], ["0", null]], { unit: "%" });
  assert.equal(md, "| Seed | CNN    |\n|------|--------|\n| 42   | 11.77% |\n| 0    | -      |");
  const html = htmlTable(["a<b"], [[1.5]], { caption: "T" });
  assert.match(html, /<th>a&lt;b<\/th>/);
  assert.match(html, /<td style="text-align:right">1.50<\/td>/);
  assert.throws(() => markdownTable(["a", "b"], [["x"]]), /row 1 has 1 cells, the header has 2/);
});

/** A finished run's outcome with these accuracies (percent; 100 images per split). */
function outcome(
  model: string,
  seed: number,
  train: number,
  val: number,
  test?: number,
): RunOutcome {
  const split = (accuracy: number) => ({ correct: accuracy, total: 100, accuracy });
  return {
    model,
    seed,
    config: studyConfig(model, { seed }),
    accuracy: {
      train: split(train),
      val: split(val),
      test: test === undefined ? undefined : split(test),
    },
  };
}
const RECORDS: RunOutcome[] = [
  outcome("cnn-regressor", 42, 20, 10, 9),
  outcome("cnn-regressor", 0, 22, 12, 11),
  outcome("cnn-classifier", 42, 70, 7),
];
const MODELS = [
  { kind: "cnn-regressor", title: "CNN Regressor" },
  { kind: "cnn-classifier", title: "CNN Classifier" },
  { kind: "vgg-regressor", title: "VGG Regressor" },
];

Deno.test("seedTable() lays out one row per seed and one column per model", () => {
  const { headers, rows } = seedTable(RECORDS, "val", MODELS);
  assert.deepEqual(headers, ["Seed", "CNN Regressor", "CNN Classifier", "VGG Regressor"]);
  assert.deepEqual(rows, [
    ["0", 12, null, null],
    ["42", 10, 7, null],
    ["mean ± std", "11.00 ± 1.41%", "7.00% (n=1)", null],
  ]);
  assert.deepEqual(seedTable(RECORDS, "test", MODELS).rows[1], ["42", 9, null, null]);
  const one = seedTable(RECORDS.filter((r) => r.seed === 42), "val", MODELS).rows;
  assert.equal(one.length, 1, "one seed: no mean row");
});

Deno.test("studyVerdicts() says per model whether the study is reproduced, and why not", () => {
  // The study: regressor val 10.65-11.42%, train 18.16-22.22%; classifier val 6.70-8.00%.
  const within = studyVerdicts([
    outcome("cnn-regressor", 0, 19, 11.0),
    outcome("cnn-regressor", 42, 21, 10.2),
  ]);
  assert.equal(within.length, 1);
  assert.equal(within[0].reproduced, true);
  assert.match(within[0].sentence, /^CNN Regressor \(seeds 0, 42\): reproduced/);
  assert.match(within[0].sentence, /validation 10\.60 ± 0\.57% \(10\.20-11\.00%\)/);

  const below = [outcome("cnn-classifier", 42, 95, 3), outcome("cnn-classifier", 0, 96, 4)];
  const torch = (val: number) => ({ ...outcome("cnn-classifier", 42, 94, val) });
  const fromData = studyVerdicts(below, [torch(3.5)])[0];
  assert.equal(fromData.reproduced, false);
  assert.match(fromData.sentence, /not reproduced on validation and training/);
  assert.match(fromData.sentence, /below it/);
  assert.match(fromData.sentence, /comes from the data/);
  const fromPort = studyVerdicts(below, [torch(7.5)])[0];
  assert.match(fromPort.sentence, /part of the difference lies in the port/);
  assert.doesNotMatch(studyVerdicts(below)[0].sentence, /PyTorch/, "no cross-check, no reason");
});

Deno.test("accuracyBars() averages over seeds with the spread as error", () => {
  const bars = accuracyBars(RECORDS, MODELS);
  assert.deepEqual(bars.categories, ["CNN Regressor", "CNN Classifier"]);
  const val = bars.series.find((s) => s.name === "Validation")!;
  assert.deepEqual(val.values, [11, 7]);
  assert.equal(val.errors![0]!.toFixed(4), Math.SQRT2.toFixed(4));
  assert.equal(val.errors![1], 0);
  assert.match(bars.subtitle, /seeds 0, 42/);
  assert.throws(() => accuracyBars(RECORDS, [MODELS[2]]), /no records/);
});

Deno.test("readSweepResults() reads the finished runs of results.json and names the file on bad input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "results.json");
    assert.equal(await readSweepResults(path), undefined);
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        config: { epochs: 15, limit: 512 },
        runs: [
          {
            model: "cnn-regressor",
            seed: 0,
            status: "done",
            accuracy: {
              train: { accuracy: 21.9 },
              val: { accuracy: 11.4 },
              test: { accuracy: 10 },
            },
          },
          {
            model: "cnn-classifier",
            seed: 10,
            status: "done",
            epochs: 15,
            accuracy: { train: { accuracy: 76.9 }, val: { accuracy: 8 } },
            history: [{ epoch: 1, trainLoss: 3, valAccuracy: 7 }],
          },
          { model: "cnn-classifier", seed: 42, status: "running", history: [] },
          { model: "vgg-regressor", seed: 0, status: "failed" },
        ],
      }),
    );
    const records = await readSweepResults(path);
    assert.equal(records?.length, 2);
    assert.deepEqual(records![1].model, "cnn-classifier");
    assert.equal(records![1].accuracy?.train.accuracy, 76.9);
    assert.equal(records![1].history?.length, 1);
    assert.deepEqual(
      [records![0].config.epochs, records![0].config.limit],
      [15, 512],
      "file-wide config applies",
    );
    assert.equal(describeSetups(records!), "15 epoch(s), 512 training images");
    await Deno.writeTextFile(path, "{oops");
    await assert.rejects(
      readSweepResults(path),
      new RegExp(`Cannot read .*results.json: invalid JSON`),
    );
    await Deno.writeTextFile(path, JSON.stringify({ runs: [{ seed: 1 }] }));
    await assert.rejects(readSweepResults(path), /run 1: missing 'model' or 'seed'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("perClassAccuracy() and errorDistances() break accuracy down by true sum", () => {
  const predictions = [3, 4, 4, 10, 0];
  const labels = [3, 4, 5, 12, 0];
  const bySum = perClassAccuracy(predictions, labels, 13);
  assert.deepEqual([bySum.counts[4], bySum.correct[4], bySum.accuracy[4]], [1, 1, 100]);
  assert.equal(bySum.accuracy[5], 0);
  assert.equal(bySum.accuracy[7], null);
  assert.deepEqual(errorDistances(predictions, labels), [[0, 3], [1, 1], [2, 1]]);
  assert.throws(() => perClassAccuracy([1], [40], 37), /label 40 at index 0 is outside 0..36/);
});

Deno.test("digitConfusion() compares read-outs position by position", () => {
  const { matrix, skipped } = digitConfusion(
    [[4, 9, 1, 1], [7, 1], [3, 3, 3, 3]],
    [[9, 9, 1, 7], [7, 1, 2, 2], [3, 3, 3, 3]],
  );
  assert.equal(skipped, 1, "a read-out with two digits for four cannot be aligned");
  assert.equal(matrix[9][4], 1);
  assert.equal(matrix[7][1], 1);
  assert.equal(matrix[3][3], 4);
  assert.deepEqual(topConfusions(matrix, 5), [{ truth: 7, read: 1, count: 1 }, {
    truth: 9,
    read: 4,
    count: 1,
  }]);
});

Deno.test("pickReadouts() mixes wrong and right predictions up to the count", () => {
  const sample = { images: [0, 1, 2, 3].map(() => new Uint8Array(6720)), labels: [5, 6, 7, 8] };
  const explanations = [5, 9, 7, 1].map((sum) => ({ sum, digits: [] })) as unknown as Parameters<
    typeof pickReadouts
  >[1];
  const items = pickReadouts(sample, explanations, { count: 3, wrong: 1 });
  assert.deepEqual(items.map((i) => [i.label, i.sum]), [[5, 5], [7, 7], [6, 9]]);
});

Deno.test("studyRunsOnRecord() returns the committed study records, never checkpoints", async () => {
  const runs = join(REPO_ROOT, "results", "study", "runs");
  const done: string[] = [];
  for await (const entry of Deno.readDir(runs)) {
    const path = join(runs, entry.name, "result.json");
    const text = await Deno.readTextFile(path).catch(() => undefined);
    if (text && JSON.parse(text).status === "done") done.push(entry.name);
  }
  const records = await studyRunsOnRecord();
  assert.ok(records.length > 0, "results/study/runs holds finished runs");
  assert.deepEqual(records.map((r) => `${r.model}_${r.seed}`).sort(), done.sort());
  for (const record of records) {
    assert.equal(record.config.epochs, 15, `${record.model}_${record.seed} is a full-size run`);
  }
});

Deno.test("svgSize() reads the root element's size and rejects SVGs without one", () => {
  const svg = '<svg width="720" height="400" xmlns="http://www.w3.org/2000/svg"><rect width="9" ' +
    'height="9"/></svg>';
  assert.deepEqual(svgSize(svg), { width: 720, height: 400 });
  assert.throws(() => svgSize('<svg viewBox="0 0 1 1"></svg>'), /no numeric width and height/);
});

Deno.test("showSvg() and showPng() reject content of the wrong type", async () => {
  await assert.rejects(showSvg("<html></html>"), /expected an SVG document/);
  await assert.rejects(showPng(new Uint8Array([1, 2, 3])), /not a PNG file/);
});

Deno.test("showInteractive() does nothing unless asked for", async () => {
  const previous = Deno.env.get("DIGITSUM_PLOT");
  Deno.env.delete("DIGITSUM_PLOT");
  try {
    assert.equal(await showInteractive([{ data: [] }]), false);
  } finally {
    if (previous !== undefined) Deno.env.set("DIGITSUM_PLOT", previous);
  }
});

Deno.test("InterruptLatch refuses each training queued behind an interrupt once", () => {
  const latch = new InterruptLatch();
  latch.admit("A"); // no interrupt
  latch.pending = true; // SIGINT while A trains
  latch.stopped("A");
  assert.throws(() => latch.admit("B"), /^KernelInterrupt: B was not started .*resume it/);
  assert.throws(() => latch.admit("C"), /C was not started because the kernel was interrupted/);
  latch.admit("A"); // A's cell run again: it resumes, and the rest may start
  latch.admit("B");
  latch.admit("C");
  latch.pending = true; // SIGINT while no training ran
  assert.throws(() => latch.admit("B"), /B was not started .*: run this cell again to start it/);
  latch.admit("B"); // run a second time: it starts
  latch.admit("C");
});

Deno.test("figure builders give Plotly the data and labels of the PNG charts", () => {
  const bars = barFigure(["CNN", "SumNet"], [{
    name: "Validation",
    values: [11, 97],
    errors: [0.5, null],
  }], { title: "Accuracy", subtitle: "seed 42", yLabel: "accuracy", yUnit: "%" });
  assert.deepEqual(bars.data[0].x, ["CNN", "SumNet"]);
  assert.deepEqual(bars.data[0].y, [11, 97]);
  assert.deepEqual(bars.data[0].error_y, { type: "data", array: [0.5, 0], visible: true });
  assert.equal(bars.layout?.yaxis?.ticksuffix, "%");
  assert.match(JSON.stringify(bars.layout?.title), /Accuracy<br><sup>seed 42<\/sup>/);
  const lines = lineFigure([{ name: "seed 0", y: [3, NaN, 1] }], { xLabel: "epoch" });
  assert.deepEqual(lines.data[0].x, [1, 2, 3]);
  assert.deepEqual(lines.data[0].y, [3, null, 1], "gaps stay gaps");
  const map = heatmapFigure([[0, 2], [1, 0]], { diagonal: true, xLabel: "read" });
  assert.deepEqual(map.data[0].z, [[null, 2], [1, null]], "zero cells stay empty");
  assert.equal(map.data.length, 2, "the diagonal is a second trace");
  assert.throws(() => interactiveRequested({ DIGITSUM_PLOT: "browser" }), /must be 'window'/);
  assert.equal(interactiveRequested({ DIGITSUM_PLOT: "window" }), true);
});

// ---------------------------------------------------------------------------------------------
// Type-checking the code cells (needs no Jupyter)

/** The code cells of a notebook as one TypeScript module importing lib/ by absolute path. */
async function notebookAsModule(notebook: string): Promise<string> {
  const cells = JSON.parse(await Deno.readTextFile(repoPath(notebook))).cells as {
    cell_type: string;
    source: string | string[];
  }[];
  const code = cells.filter((c) => c.cell_type === "code").map((c) =>
    Array.isArray(c.source) ? c.source.join("") : c.source
  );
  const lib = new URL("../lib/", import.meta.url).href;
  return code.join("\n\n").replaceAll(`"../lib/`, `"${lib}`) + "\nexport {};\n";
}

for (const notebook of NOTEBOOKS) {
  Deno.test(`${notebook} code cells type-check against lib/`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "digitsum_nbcheck_" });
    try {
      const file = join(dir, "cells.ts");
      await Deno.writeTextFile(file, await notebookAsModule(notebook));
      const { success, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", "--config", repoPath("deno.json"), file],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const message = new TextDecoder().decode(stderr).replaceAll(`file://${file}`, notebook);
      assert.ok(success, `${notebook} does not type-check:\n${message}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Headless execution

async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const { success, stdout, stderr } = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
      env: { PYDEVD_DISABLE_FILE_VALIDATION: "1" },
    }).output();
    const decoder = new TextDecoder();
    return { ok: success, out: decoder.decode(stdout), err: decoder.decode(stderr) };
  } catch (error) {
    return { ok: false, out: "", err: String(error) };
  }
}

/** Why notebooks cannot be executed here, or `undefined` when they can. */
async function missingJupyter(): Promise<string | undefined> {
  const nbconvert = await run("jupyter", ["nbconvert", "--version"]);
  if (!nbconvert.ok) return `jupyter nbconvert is not available (${nbconvert.err.trim()})`;
  const kernels = await run("jupyter", ["kernelspec", "list", "--json"]);
  if (!kernels.ok) return `'jupyter kernelspec list' failed (${kernels.err.trim()})`;
  let specs: Record<string, unknown>;
  try {
    specs = JSON.parse(kernels.out).kernelspecs ?? {};
  } catch {
    return `'jupyter kernelspec list --json' printed no JSON (${kernels.out.slice(0, 200)})`;
  }
  if (!("deno" in specs)) return "the Deno Jupyter kernel is not installed";
  return undefined;
}

const missing = await missingJupyter();
const required = Deno.env.get("CI") === "true";
if (missing && !required) {
  console.log(`notebooks_test: skipping notebook execution: ${missing}; ${INSTALL_HINT}.`);
}

interface NotebookOutput {
  output_type: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
  ename?: string;
  evalue?: string;
}
interface NotebookCell {
  cell_type: string;
  source: string | string[];
  outputs?: NotebookOutput[];
}

const joined = (s: string | string[] | undefined) => Array.isArray(s) ? s.join("") : s ?? "";

/** Execute a notebook in quick mode into a temporary folder; returns its cells. */
async function executeQuick(notebook: string): Promise<NotebookCell[]> {
  const outDir = await Deno.makeTempDir({ prefix: "digitsum_nb_" });
  try {
    const { success, stdout, stderr } = await new Deno.Command("jupyter", {
      args: [
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        `--ExecutePreprocessor.timeout=${CELL_TIMEOUT}`,
        "--ExecutePreprocessor.kernel_name=deno",
        "--output-dir",
        outDir,
        repoPath(notebook),
      ],
      env: { DIGITSUM_QUICK: "1", PYDEVD_DISABLE_FILE_VALIDATION: "1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    const name = notebook.split("/").pop()!;
    let cells: NotebookCell[] = [];
    try {
      cells = JSON.parse(await Deno.readTextFile(join(outDir, name))).cells;
    } catch {
      // nbconvert writes nothing when a cell fails; the log says which.
    }
    const errors = cells.flatMap((cell, i) =>
      (cell.outputs ?? []).filter((o) => o.output_type === "error").map((o) =>
        `cell ${i + 1} (${joined(cell.source).split("\n")[0]}): ${o.ename}: ${o.evalue}`
      )
    );
    assert.ok(
      success && errors.length === 0,
      `${notebook} failed in quick mode:\n${errors.join("\n")}\n${log.slice(-4000)}`,
    );
    const values = cells.flatMap((cell, i) =>
      (cell.outputs ?? []).filter((o) => o.output_type === "execute_result").map((o) =>
        `cell ${i + 1} (${joined(cell.source).split("\n")[0]}): ${joined(o.data?.["text/plain"])}`
      )
    );
    assert.deepEqual(values, [], `${notebook}: cells end with a stray value`);
    return cells;
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
}

function allText(cells: NotebookCell[]): string {
  return cells.flatMap((c) => c.outputs ?? []).map((o) =>
    joined(o.text) + joined(o.data?.["text/plain"])
  ).join("\n");
}

/** Outputs that show an image (PNG, or SVG where no font was found for the PNG). */
function countImages(cells: NotebookCell[]): number {
  return cells.flatMap((c) => c.outputs ?? [])
    .filter((o) => o.data?.["image/png"] || o.data?.["image/svg+xml"]).length;
}

function countMime(cells: NotebookCell[], mime: string): number {
  return cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[mime]).length;
}

Deno.test({
  name: "study.ipynb executes headless in quick mode and prints the study's lines",
  ignore: missing !== undefined && !required,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.equal(missing, undefined, `CI=true requires Jupyter: ${missing}; ${INSTALL_HINT}`);
    const cells = await executeQuick(NOTEBOOKS[0]);
    const first = cells.find((c) => c.cell_type === "code")!;
    assert.match(joined(first.outputs?.[0]?.text), /^QUICK MODE/);
    const text = allText(cells);
    assert.match(text, /Epoch 1\/1, Train Loss: \d+\.\d{4}, Val Accuracy: \d+\.\d{4}/);
    for (const noun of ["Regressor", "Classifer"]) {
      for (const split of ["Validation", "Training", "Held-out Test"]) {
        assert.match(
          text,
          new RegExp(
            `Overall Accuracy of ${noun} on ${split}( \\(first \\d+\\))? Split: \\d+\\.\\d\\d%`,
          ),
        );
      }
    }
    assert.ok(countMime(cells, "text/html") >= 3, "the three accuracy tables are missing");
    assert.ok(countImages(cells) >= 3, "the plots are missing");
    assert.equal(
      countMime(cells, PLOTLY_MIME),
      countImages(cells),
      "every chart carries its Plotly figure beside the PNG",
    );
    const training = cells.find((c) =>
      joined(c.source).includes('trainStudyModel("cnn-regressor"')
    );
    assert.match(
      allText(training ? [training] : []),
      /Epoch 1\/1, Train Loss: /,
      "the regressor's epoch line is not in its own cell",
    );
  },
});

Deno.test({
  name: "beyond.ipynb executes headless in quick mode",
  ignore: missing !== undefined && !required,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.equal(missing, undefined, `CI=true requires Jupyter: ${missing}; ${INSTALL_HINT}`);
    const cells = await executeQuick(NOTEBOOKS[1]);
    const first = cells.find((c) => c.cell_type === "code")!;
    assert.match(joined(first.outputs?.[0]?.text), /^QUICK MODE/);
    const text = allText(cells);
    assert.match(text, /Overall Accuracy of Model on Held-out Test Split: \d+\.\d\d%/);
    assert.match(text, /Epoch 1\/1, Train Loss: /, "the training demo did not run");
    assert.ok(countImages(cells) >= 5, "beyond.ipynb lacks its figures");
    if (text.includes("Loaded trained_models/sumnet")) {
      // The analysis ran on the shipped model: it must read sums far above the study's models.
      const lines = [...text.matchAll(/Overall Accuracy of Model on Validation Split: ([\d.]+)%/g)];
      const shipped = Number(lines.at(-1)![1]);
      assert.ok(shipped >= 80, `the shipped SumNet scored ${shipped}% on validation images`);
    }
  },
});

Deno.test({
  name: "every cell's last output lands in that cell (no settle lines needed)",
  ignore: missing !== undefined && !required,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.equal(missing, undefined, `CI=true requires Jupyter: ${missing}; ${INSTALL_HINT}`);
    // Inside the repository, so that the kernel finds deno.json for lib/'s imports.
    await Deno.mkdir(repoPath("runs"), { recursive: true });
    const dir = await Deno.makeTempDir({ dir: repoPath("runs"), prefix: "late_output_" });
    try {
      const lib = new URL("../lib/notebook/mod.ts", import.meta.url).href;
      const code = [
        `import * as nb from "${lib}";\nnb.notebookSettings();\nconsole.log("cell 0");`,
        ...Array.from(
          { length: LATE_OUTPUT_CELLS },
          (_, i) => `const value${i + 1} = ${i + 1};\nconsole.log("cell ${i + 1}");`,
        ),
      ];
      const notebook = {
        cells: code.map((source) => ({
          cell_type: "code",
          execution_count: null,
          metadata: {},
          outputs: [],
          source,
        })),
        metadata: { kernelspec: { display_name: "Deno", language: "typescript", name: "deno" } },
        nbformat: 4,
        nbformat_minor: 5,
      };
      await Deno.writeTextFile(join(dir, "late.ipynb"), JSON.stringify(notebook));
      const cells = await executeQuick(join(dir, "late.ipynb"));
      const wrong = cells.map((cell, i) => [i, allText([cell]).trim()] as const)
        .filter(([i, text]) => text !== `cell ${i}`);
      assert.deepEqual(wrong, [], "outputs missing or in another cell");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
