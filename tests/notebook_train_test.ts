/**
 * A notebook trains a model the way `deno task train` does: the same `runExperiment`, the same
 * configuration for the same seed, so the same numbers; and a run stopped by Kernel > Interrupt
 * and continued ends with the numbers of an uninterrupted one. Small runs (128 training images,
 * one epoch) on the backend `auto` picks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { modelRunConfig, notebookSettings, trainStudyModel } from "../lib/notebook/mod.ts";
import { type RunAccuracy, runExperiment, RunStoppedError } from "../lib/training/experiment.ts";
import type { EpochRecord } from "../lib/training/train.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Training images of these runs (validation gets a quarter). */
const LIMIT = 128;
/** The test images quick mode scores. */
const TEST_LIMIT = 256;
const KIND = "cnn-regressor";

/** The numbers of a run: per-epoch loss and validation accuracy, and the overall accuracies. */
function numbers(history: readonly EpochRecord[], accuracy: RunAccuracy) {
  return {
    epochs: history.map((e) => [e.epoch, e.trainLoss, e.valAccuracy]),
    accuracy: JSON.parse(JSON.stringify(accuracy)),
  };
}

Deno.test({
  name: "a notebook's training cell gives the numbers `deno task train` gives for the same seed",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "digitsum_nbtrain_" });
    try {
      const settings = {
        ...notebookSettings({ DIGITSUM_QUICK: "1" }),
        limit: LIMIT,
        modelsDir: join(dir, "notebook"),
      };
      const notebook = await trainStudyModel(KIND, settings);
      assert.ok(notebook, "the CNN regressor can always be built");
      notebook.model.dispose();

      const config = modelRunConfig(KIND, settings);
      const cli = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "cli", "train.ts"),
          ...["--model", KIND, "--seed", String(config.seed), "--epochs", String(config.epochs)],
          ...["--limit", String(LIMIT), "--test-limit", String(TEST_LIMIT)],
          ...["--data-dir", config.dataDir, "--out", join(dir, "cli")],
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const output = new TextDecoder().decode(cli.stdout) + new TextDecoder().decode(cli.stderr);
      assert.ok(cli.success, `deno task train failed:\n${output}`);
      const meta = JSON.parse(
        await Deno.readTextFile(join(dir, "cli", `cnnregressor_${config.seed}`, "digitsum.json")),
      );
      assert.deepEqual(meta.config, notebook.config, "the same configuration");
      assert.deepEqual(
        numbers(meta.history, meta.accuracy),
        numbers(notebook.history, notebook.accuracy),
      );
      assert.equal(notebook.accuracy.test?.total, TEST_LIMIT);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "runExperiment() stopped after a batch and resumed from its held run ends as an unbroken run",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const config = {
      ...modelRunConfig(KIND, { ...notebookSettings({}), limit: LIMIT }),
      epochs: 2,
    };
    const options = { progress: false, test: false, log: () => {} };
    const unbroken = await runExperiment(config, options);
    unbroken.model.dispose();
    let batches = 0;
    const stopped = await runExperiment(config, {
      ...options,
      stopAfterBatch: () => ++batches === 3,
    })
      .then(() => undefined, (error) => error);
    assert.ok(stopped instanceof RunStoppedError, `it did not stop: ${stopped}`);
    assert.equal(stopped.where, "during epoch 2/2 (after batch 1/2)");
    assert.ok(stopped.held);
    const resumed = await runExperiment(config, { ...options, resume: stopped.held });
    resumed.model.dispose();
    assert.deepEqual(
      numbers(resumed.history, resumed.accuracy),
      numbers(unbroken.history, unbroken.accuracy),
    );
  },
});
