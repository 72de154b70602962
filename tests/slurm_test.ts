/**
 * The sweep on a real SLURM cluster: tools/slurm_cluster.sh brings up a one-node cluster in a
 * scratch folder, and the quick grid (CNN regressor, seeds 0, 1, 2; EPOCHS epochs of 16 images)
 * runs as a job array of three tasks, one shard each (tools/slurm_sweep.sbatch):
 *
 * - task 1 runs through;
 * - task 2 is requeued (`scontrol requeue`) midway and resumes in the same job;
 * - task 3 is cancelled (`scancel`) midway; its shard is submitted again on its own
 *   (`SWEEP_SHARDS=3 sbatch --array=3`) and resumes.
 *
 * The shards are merged and the tables must equal those of the same grid run locally.
 *
 * No clock decides where the interruption lands: once a task has saved its first epoch the test
 * freezes its processes (SIGSTOP), reads how many epochs it has saved while it cannot move, checks
 * that the epoch under way is not the last one, and only then requeues or cancels it (SLURM sends
 * SIGCONT, then SIGTERM; the sweep finishes the epoch under way, saves it and exits). So the task
 * always has work left to resume, however fast or busy the machine. (`scontrol suspend` is no
 * substitute: SLURM kills a suspended task with SIGKILL and holds a requeued one.)
 *
 * Needs root, Debian's slurm-wlm and munge. Required when `CI=true` or `DIGITSUM_SLURM=1` (as
 * root); skipped with the reason otherwise. The cluster is torn down afterwards.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureDataset } from "../lib/data/generate.ts";
import { collectResults } from "../lib/results/report.ts";

const REPO = new URL("..", import.meta.url).pathname;
const CLUSTER = join(REPO, "tools", "slurm_cluster.sh");
const JOB = join(REPO, "tools", "slurm_sweep.sbatch");
const decoder = new TextDecoder();
/** Epochs of every run: the suspended task must be short of its last one (it is at epoch 2). */
const EPOCHS = 6;
/** The quick grid, as flags of `deno task sweep` (the data folder is added). */
const GRID = [
  "--models",
  "cnn-regressor",
  "--seeds",
  "0,1,2",
  "--epochs",
  String(EPOCHS),
  "--limit",
  "16",
  "--batch-size",
  "16",
  "--test-limit",
  "16",
  "--backend",
  "wasm",
  "--no-png",
];
/** Array tasks (one shard each). */
const TASKS = 3;
/** The task that is requeued midway, and the one that is cancelled and submitted again. */
const REQUEUED = 2;
const CANCELLED = 3;
/** Seconds to wait for anything the cluster does (a busy 2-core machine is slow). */
const PATIENCE = 900;

/** Why the test cannot run here, or `undefined`. */
async function missing(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (the cluster's daemons run as root)";
  for (const tool of ["sbatch", "scontrol", "squeue", "scancel", "slurmctld", "slurmd", "munged"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    })
      .output();
    if (!found.success) return `${tool} is not installed (apt-get install slurm-wlm munge)`;
  }
  return undefined;
}

/**
 * Required with `CI=true` or `DIGITSUM_SLURM=1` as root on Linux (so a missing SLURM fails there);
 * skipped with the reason otherwise.
 */
const WANTED = Deno.env.get("CI") === "true" || Deno.env.get("DIGITSUM_SLURM") === "1";
const MISSING = await missing();
const REQUIRED = WANTED && Deno.build.os === "linux" && Deno.uid() === 0;
if (MISSING) console.log(`slurm_test: skipping the SLURM cluster test: ${MISSING}`);

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

/** Poll `check` every 200 ms until it returns a value, or fail after {@link PATIENCE} seconds. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + PATIENCE * 1000;
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${PATIENCE} s waiting for ${what}`);
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

/** A file's text, or "" when it is missing. */
function readOrEmpty(path: string): Promise<string> {
  return Deno.readTextFile(path).catch(() => "");
}

/**
 * Epochs a run has saved in its resumable state (`state/digitsum.json`, written atomically), the
 * point a restart resumes from. Not history.json: the sweep writes that one just after the state,
 * and a task frozen between the two writes once read 0 there (the CI dry run that failed).
 */
async function epochsSaved(runDir: string): Promise<number> {
  const text = await readOrEmpty(join(runDir, "state", "digitsum.json"));
  return text ? (JSON.parse(text) as { history: unknown[] }).history.length : 0;
}

/** Process ids of the sweep (and `deno task`) writing into `shardDir`. */
async function sweepPids(shardDir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await readOrEmpty(`/proc/${entry.name}/cmdline`);
    const args = cmdline.split("\0");
    if (args.includes(shardDir) && args.some((a) => a.includes("sweep"))) {
      pids.push(Number(entry.name));
    }
  }
  return pids;
}

/** Whether every process is stopped (state T in /proc/PID/stat) or gone. */
async function allStopped(pids: number[]): Promise<boolean> {
  for (const pid of pids) {
    const stat = await readOrEmpty(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (stat && state !== "T") return false;
  }
  return true;
}

/** The fields of `scontrol show job` the test checks, one entry per array task. */
interface TaskState {
  id: number;
  state?: string;
  exit?: string;
  restarts: number;
}

/** The array tasks of a job, by array index. */
async function taskStates(jobId: string, env: Record<string, string>): Promise<TaskState[]> {
  const jobs = await run("scontrol", ["show", "job", jobId], { env });
  return jobs.split(/\n(?=JobId=)/).map((block) => ({
    id: Number(/ArrayTaskId=(\d+)/.exec(block)?.[1]),
    state: /JobState=(\S+)/.exec(block)?.[1],
    exit: /\bExitCode=(\S+)/.exec(block)?.[1],
    restarts: Number(/Restarts=(\d+)/.exec(block)?.[1]),
  })).sort((a, b) => a.id - b.id);
}

/** `Resuming ... after epoch N/EPOCHS` in a run's log: N, or `undefined`. */
function resumedAfter(log: string): number | undefined {
  const match = new RegExp(`Resuming CNN Regressor seed \\d+ after epoch (\\d+)/${EPOCHS}`).exec(
    log,
  );
  return match ? Number(match[1]) : undefined;
}

Deno.test({
  name:
    "the sweep runs as a SLURM job array, survives a requeue and a cancel, and merges to the local tables",
  ignore: MISSING !== undefined && !REQUIRED,
  fn: async () => {
    assert.equal(MISSING, undefined, `CI=true requires SLURM: ${MISSING}`);
    const started = performance.now();
    const scratch = await Deno.makeTempDir({ prefix: "digitsum_slurm_test_" });
    await Deno.chmod(scratch, 0o755); // munged runs as user munge and must reach its socket
    const data = join(scratch, "data");
    await ensureDataset(data, { imagesPerFile: 100, testCount: 64, log: () => {} });
    const cluster = join(scratch, "cluster");
    const out = join(scratch, "sweep");
    const shard = (i: number) => join(out, `shard_${i}`);
    const runDir = (i: number) => join(shard(i), "runs", `cnn-regressor_${i - 1}`);
    const sweep = (args: string[]) =>
      run(Deno.execPath(), ["run", "-A", join(REPO, "cli", "sweep.ts"), ...args], {
        env: { DIGITSUM_THREADS: "1" },
      });
    // The same grid locally, meanwhile: the reference the merged tables must equal.
    const local = sweep([
      ...GRID,
      "--data-dir",
      data,
      "--out",
      join(scratch, "local"),
      "--no-report",
    ]);
    local.catch(() => {}); // awaited below; a failure there must not go unhandled meanwhile
    let passed = false;
    try {
      const ports = { SLURM_CTLD_PORT: String(freePort()), SLURM_D_PORT: String(freePort()) };
      const up = await run(CLUSTER, ["up", cluster], { env: ports });
      const env = {
        SLURM_CONF: up.trim().replace(/^export SLURM_CONF=/, ""),
        DIGITSUM_THREADS: "1",
        SWEEP_OUT: out,
      };
      // Submitted from the repository: `deno task sweep` runs there, as a user would submit it.
      const submit = async (array: string, extra: Record<string, string> = {}) =>
        (await run("sbatch", [
          "--parsable",
          `--array=${array}`,
          `--output=${join(scratch, "job_%A_%a.log")}`,
          JOB,
          ...GRID,
          "--data-dir",
          data,
        ], { env: { ...env, ...extra }, cwd: REPO })).trim();
      const jobId = await submit(`1-${TASKS}`);
      const task = (i: number, job = jobId) => `${job}_${i}`;
      const queueState = (id: string) =>
        run("squeue", ["-h", "-j", id, "-o", "%T"], { env }).then((s) => s.trim());
      const jobLog = (i: number, job = jobId) => readOrEmpty(join(scratch, `job_${job}_${i}.log`));

      /**
       * Wait until task `i` has saved its first epoch, freeze its processes (SIGSTOP) and check,
       * while they cannot move, that the epoch under way is not the last; then `interrupt` stops
       * the task with work left: SLURM sends SIGCONT, then SIGTERM, to every process of the task.
       * Returns the epochs saved when it was frozen.
       */
      const interruptMidway = async (i: number, interrupt: () => Promise<unknown>) => {
        await waitFor(
          `task ${i} to save its first epoch`,
          async () => (await epochsSaved(runDir(i))) >= 1 || undefined,
        );
        const pids = await sweepPids(shard(i));
        for (const pid of pids) Deno.kill(pid, "SIGSTOP");
        await waitFor(
          `the sweep of task ${i} to stop`,
          async () => await allStopped(pids) || undefined,
        );
        const saved = await epochsSaved(runDir(i));
        assert.ok(
          pids.length > 0 && saved >= 1 && saved + 1 < EPOCHS,
          `task ${i} was frozen with ${saved} of ${EPOCHS} epochs saved (pids ${pids}): ` +
            `the epoch under way must not be its last`,
        );
        await interrupt();
        return saved;
      };

      // Task 2: requeued midway. A requeued job waits about two minutes (its begin time) unless
      // told to start now.
      const savedAtRequeue = await interruptMidway(
        REQUEUED,
        () => run("scontrol", ["requeue", task(REQUEUED)], { env }),
      );
      await waitFor(
        "the requeued task to be pending",
        async () => (await queueState(task(REQUEUED))) === "PENDING" || undefined,
      );
      await run("scontrol", ["update", `jobid=${task(REQUEUED)}`, "StartTime=now"], { env });

      // Task 3: cancelled midway; once it has left the queue, its shard is submitted on its own.
      const savedAtCancel = await interruptMidway(
        CANCELLED,
        () => run("scancel", [task(CANCELLED)], { env }),
      );
      await waitFor(
        "the cancelled task to leave the queue",
        async () => (await queueState(task(CANCELLED))) === "" || undefined,
      );
      const againId = await submit(String(CANCELLED), { SWEEP_SHARDS: String(TASKS) });

      // Everything ends; the tasks that ran to the end completed with exit code 0.
      for (const id of [jobId, againId]) {
        await waitFor(
          `job ${id} to end`,
          async () => (await run("squeue", ["-h", "-j", id], { env })).trim() === "" || undefined,
        );
      }
      const logs = async () =>
        (await Promise.all([
          ...[1, 2, 3].map((i) => jobLog(i)),
          jobLog(CANCELLED, againId),
        ])).join("\n----\n");
      const tasks = await taskStates(jobId, env);
      const again = await taskStates(againId, env);
      assert.deepEqual(
        [...tasks, ...again].map((
          t,
        ) => [t.id, t.state, t.state === "CANCELLED" ? "-" : t.exit, t.restarts]),
        [
          [1, "COMPLETED", "0:0", 0],
          [REQUEUED, "COMPLETED", "0:0", 1], // ran twice: requeued once
          [CANCELLED, "CANCELLED", "-", 0], // scancel
          [CANCELLED, "COMPLETED", "0:0", 0], // the same shard, submitted again
        ],
        await logs(),
      );
      // Both interrupted runs stopped after an epoch and resumed from it: nothing saved was lost,
      // something was left to do.
      for (const [i, saved] of [[REQUEUED, savedAtRequeue], [CANCELLED, savedAtCancel]]) {
        const log = await Deno.readTextFile(join(runDir(i), "log.txt"));
        const after = resumedAfter(log);
        assert.ok(
          after !== undefined && after >= saved && after < EPOCHS,
          `task ${i} (suspended with ${saved} epochs saved) resumed after epoch ${after}:\n${log}`,
        );
      }
      const requeuedLog = await jobLog(REQUEUED);
      assert.match(requeuedLog, /SIGTERM: stopping after the current epoch/);
      assert.doesNotMatch(requeuedLog, /Second interrupt/);

      // Merge the shards; the tables equal the local run's.
      const shards = Array.from({ length: TASKS }, (_, i) => shard(i + 1));
      await sweep(["--merge", ...shards, "--out", join(out, "merged"), "--no-png"]);
      await local;
      const merged = await collectResults(join(out, "merged"));
      const reference = await collectResults(join(scratch, "local"));
      assert.deepEqual(merged.tables, reference.tables);
      assert.deepEqual(
        merged.runs.map((r) => [r.key, r.status, r.accuracy]),
        reference.runs.map((r) => [r.key, r.status, r.accuracy]),
      );
      console.log(
        `slurm: ${TASKS} array tasks; task ${REQUEUED} requeued with ${savedAtRequeue}/${EPOCHS} epochs ` +
          `saved, resumed after epoch ${
            resumedAfter(await readOrEmpty(join(runDir(REQUEUED), "log.txt")))
          }/${EPOCHS}; ` +
          `task ${CANCELLED} cancelled with ${savedAtCancel}/${EPOCHS} saved, submitted again, resumed after ` +
          `epoch ${
            resumedAfter(await readOrEmpty(join(runDir(CANCELLED), "log.txt")))
          }/${EPOCHS}; ` +
          `merged tables equal the local run's; ${
            ((performance.now() - started) / 1000).toFixed(0)
          } s`,
      );
      passed = true;
    } finally {
      await run(CLUSTER, ["down", cluster]).catch((error) => console.error(error.message));
      await local.catch(() => {});
      if (passed) await Deno.remove(scratch, { recursive: true }).catch(() => {});
      else console.log(`slurm_test: logs kept in ${scratch}`);
    }
  },
});
