/**
 * The sweep on a real SLURM cluster: tools/slurm_cluster.sh brings up a one-node cluster in a
 * scratch folder, the quick grid (CNN regressor, seeds 0, 1, 2; 4 epochs of 64 images) runs as
 * a job array of three tasks, one shard each (tools/slurm_sweep.sbatch). One task is requeued
 * (`scontrol requeue`) once its first epoch is saved, and resumes; the shards are merged and the
 * tables must equal those of the same grid run locally. The cluster is torn down afterwards.
 *
 * Needs root, Debian's slurm-wlm and munge. On demand only: `DIGITSUM_SLURM=1 deno test -A
 * tests/slurm_test.ts`. It is not run in CI: the requeue races the task (on a busy machine the task
 * sometimes finishes before the requeue lands, or restarts instead of resuming), so it fails
 * now and then for reasons of timing, not of the sweep.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureDataset } from "../lib/data/generate.ts";
import { collectResults } from "../lib/results/report.ts";

const REPO = new URL("..", import.meta.url).pathname;
const CLUSTER = join(REPO, "tools", "slurm_cluster.sh");
const JOB = join(REPO, "tools", "slurm_sweep.sbatch");
const decoder = new TextDecoder();
/** The quick grid, as flags of `deno task sweep` (the data folder is added). */
const GRID = [
  "--models",
  "cnn-regressor",
  "--seeds",
  "0,1,2",
  "--epochs",
  "4",
  "--limit",
  "64",
  "--test-limit",
  "64",
  "--backend",
  "wasm",
  "--no-png",
];
/** Array tasks (one shard each). */
const TASKS = 3;
/** The task that is requeued midway, and the run of its shard. */
const REQUEUED = 2;
const REQUEUED_RUN = "cnn-regressor_1";

/** Why the test cannot run here, or `undefined`. */
async function missing(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (the cluster's daemons run as root)";
  for (const tool of ["sbatch", "scontrol", "squeue", "slurmctld", "slurmd", "munged"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    })
      .output();
    if (!found.success) return `${tool} is not installed (apt-get install slurm-wlm munge)`;
  }
  return undefined;
}

/** On demand only (see the module comment): its requeue timing is not reliable enough for CI. */
const WANTED = Deno.env.get("DIGITSUM_SLURM") === "1";
const MISSING = WANTED ? await missing() : "not asked for (DIGITSUM_SLURM=1 runs it)";
const REQUIRED = WANTED;
if (!WANTED) {
  console.log("slurm_test: skipped: its requeue timing is unreliable; DIGITSUM_SLURM=1 runs it");
} else if (MISSING) {
  console.log(`slurm_test: skipping the SLURM cluster test: ${MISSING}`);
}

/** Run a command; its output, or an error with its output when it fails. */
async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  const result = await new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = decoder.decode(result.stdout);
  if (!result.success) {
    throw new Error(`${command} ${args.join(" ")} failed:\n${out}${decoder.decode(result.stderr)}`);
  }
  return out;
}

/** Poll `check` every 200 ms until it returns a value, or fail after `seconds`. */
async function waitFor<T>(
  what: string,
  seconds: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A TCP port nobody listens on now (another cluster on this machine may use SLURM's 6817). */
function freePort(): number {
  const listener = Deno.listen({ port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Whether a file exists. */
async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test({
  name: "the sweep runs as a SLURM job array, survives a requeue, and merges to the local tables",
  ignore: MISSING !== undefined && !REQUIRED,
  fn: async () => {
    assert.equal(MISSING, undefined, `CI=true requires SLURM: ${MISSING}`);
    const scratch = await Deno.makeTempDir({ prefix: "digitsum_slurm_test_" });
    await Deno.chmod(scratch, 0o755); // munged runs as user munge and must reach its socket
    const data = join(scratch, "data");
    await ensureDataset(data, { imagesPerFile: 100, testCount: 64, log: () => {} });
    const cluster = join(scratch, "cluster");
    const started = performance.now();
    try {
      const ports = { SLURM_CTLD_PORT: String(freePort()), SLURM_D_PORT: String(freePort()) };
      const up = await run(CLUSTER, ["up", cluster], { env: ports });
      const env = {
        SLURM_CONF: up.trim().replace(/^export SLURM_CONF=/, ""),
        DIGITSUM_THREADS: "1",
      };
      const out = join(scratch, "sweep");
      // Submitted from the repository: `deno task sweep` runs there, as a user would submit it.
      const jobId = (await run("sbatch", [
        "--parsable",
        `--array=1-${TASKS}`,
        `--output=${join(scratch, "job_%A_%a.log")}`,
        JOB,
        ...GRID,
        "--data-dir",
        data,
      ], { env: { ...env, SWEEP_OUT: out }, cwd: REPO })).trim();
      const task = (i: number) => `${jobId}_${i}`;
      const state = (i: number) =>
        run("squeue", ["-h", "-j", task(i), "-o", "%T"], { env }).then((s) => s.trim());

      // Requeue task 2 once its first epoch is saved: SIGTERM, then it goes back to the queue.
      const runDir = join(out, `shard_${REQUEUED}`, "runs", REQUEUED_RUN);
      await waitFor(
        "the first epoch of the requeued task",
        600,
        async () => await exists(join(runDir, "state", "digitsum.json")) ? true : undefined,
      );
      await run("scontrol", ["requeue", task(REQUEUED)], { env });
      // A requeued job waits about two minutes (its begin time) unless told to start now.
      await waitFor(
        "the requeued task to be pending",
        60,
        async () => (await state(REQUEUED)) === "PENDING" ? true : undefined,
      );
      await run("scontrol", ["update", `jobid=${task(REQUEUED)}`, "StartTime=now"], { env });

      // All tasks end; each completed with exit code 0.
      await waitFor(
        "the job array to end",
        900,
        async () =>
          (await run("squeue", ["-h", "-j", jobId], { env })).trim() === "" ? true : undefined,
      );
      const jobs = await run("scontrol", ["show", "job", jobId], { env });
      const tasks = jobs.split(/\n(?=JobId=)/).map((block) => ({
        id: Number(/ArrayTaskId=(\d+)/.exec(block)?.[1]),
        state: /JobState=(\S+)/.exec(block)?.[1],
        exit: /\bExitCode=(\S+)/.exec(block)?.[1],
        restarts: Number(/Restarts=(\d+)/.exec(block)?.[1]),
      })).sort((a, b) => a.id - b.id);
      assert.deepEqual(
        tasks.map((t) => [t.id, t.state, t.exit]),
        [1, 2, 3].map((i) => [i, "COMPLETED", "0:0"]),
        jobs,
      );
      assert.equal(tasks[REQUEUED - 1].restarts, 1, "the requeued task ran twice");
      const log = await Deno.readTextFile(join(runDir, "log.txt"));
      // SIGTERM lets the epoch under way finish and be saved: it resumes after epoch 1, 2 or 3
      // (4 epochs leave work after the requeue however fast the machine).
      const resumed = /Resuming CNN Regressor seed 1 after epoch ([123])\/4/.exec(log);
      assert.ok(resumed, `it resumed, not restarted:\n${log}`);

      // Merge the shards; the tables equal a local run of the same grid.
      const shards = Array.from({ length: TASKS }, (_, i) => join(out, `shard_${i + 1}`));
      const sweep = (args: string[]) =>
        run(Deno.execPath(), ["run", "-A", join(REPO, "cli", "sweep.ts"), ...args], {
          env: { DIGITSUM_THREADS: "1" },
        });
      await sweep(["--merge", ...shards, "--out", join(out, "merged"), "--no-png"]);
      await sweep([...GRID, "--data-dir", data, "--out", join(scratch, "local")]);
      const merged = await collectResults(join(out, "merged"));
      const local = await collectResults(join(scratch, "local"));
      assert.deepEqual(merged.tables, local.tables);
      assert.deepEqual(
        merged.runs.map((r) => [r.key, r.status, r.accuracy]),
        local.runs.map((r) => [r.key, r.status, r.accuracy]),
      );
      console.log(
        `slurm: ${TASKS} array tasks, task ${REQUEUED} requeued after its first epoch and ` +
          `resumed after epoch ${resumed[1]} (restarts ${tasks[REQUEUED - 1].restarts}); ` +
          `merged tables equal the local ` +
          `run's; ${((performance.now() - started) / 1000).toFixed(0)} s with the local run`,
      );
    } finally {
      await run(CLUSTER, ["down", cluster]).catch((error) => console.error(error.message));
      await Deno.remove(scratch, { recursive: true }).catch(() => {});
    }
  },
});
