/**
 * The sweep under faults, on one quick grid (CNN regressor, seeds 0 and 1, 2 epochs of 64
 * images, 64 test images, the wasm backend on one thread): the sweep CLI is killed with SIGKILL
 * at random moments and inside writes (checkpoints, their swap, atomic files, the report), its
 * output folder fills up (a small tmpfs), turns read-only, and loses a run's state while the run
 * resumes. Every time, what was finished stays finished and readable, and the tables in the end
 * equal those of an uninterrupted run.
 *
 * Kills: `DIGITSUM_KILLS=N` (default 16; the long mode `DIGITSUM_FUZZ=long`: 100). The disk and
 * read-only tests mount file systems: they need root; they are required when `CI=true` and
 * skipped with the reason otherwise.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../lib/runtime/backend.ts";
import { loadCheckpoint } from "../lib/training/checkpoint.ts";
import { ensureDataset } from "../lib/data/generate.ts";
import { collectResults } from "../lib/results/report.ts";
import type { EpochRecord } from "../lib/training/train.ts";
import { FuzzRandom } from "./fuzz_support.ts";
import { readRunRecord, type RunRecord } from "../lib/results/record.ts";

const ROOT = await Deno.makeTempDir({ prefix: "digitsum_faults_test_" });
// Removed when this module's tests end, whichever of them ran (`--filter` included).
globalThis.addEventListener("unload", () => Deno.removeSync(ROOT, { recursive: true }));
const DATA = join(ROOT, "data");
const CLI = new URL("../cli/sweep.ts", import.meta.url).pathname;
const LONG = Deno.env.get("DIGITSUM_FUZZ") === "long";
/** Kills of the kill test. */
const KILLS = Number(Deno.env.get("DIGITSUM_KILLS") ?? (LONG ? 100 : 16));
/** Run keys of the grid. */
const KEYS = ["cnn-regressor_0", "cnn-regressor_1"];
/** Where a kill point can land (lib/io/fsutil.ts `killPoint`): name and how often it is reached. */
const KILL_POINTS: Array<[string, number]> = [
  ["checkpoint", 6], // a checkpoint's weights written, the rest not yet (3 saves per run)
  ["checkpoint-swap", 4], // the old checkpoint moved aside, the new one not yet in place
  ["atomic-write", 40], // a JSON record, log or report file written, not yet renamed
  ["report", 1], // RESULTS.md written, results.json, figures and report.html not yet
];
const decoder = new TextDecoder();

let dataReady: Promise<unknown> | undefined;
function data(): Promise<unknown> {
  dataReady ??= ensureDataset(DATA, { imagesPerFile: 100, testCount: 64, log: () => {} });
  return dataReady;
}

/** Start the sweep CLI on the quick grid (or some of its seeds) into `out`. */
function spawnSweep(
  out: string,
  options: { seeds?: string; env?: Record<string, string>; args?: string[] } = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "--models",
      "cnn-regressor",
      "--seeds",
      options.seeds ?? "0,1",
      "--epochs",
      "2",
      "--limit",
      "64",
      "--test-limit",
      "64",
      "--backend",
      "wasm",
      "--data-dir",
      DATA,
      "--out",
      out,
      "--no-png",
      ...(options.args ?? []),
    ],
    // One wasm thread everywhere: the same arithmetic in every process.
    env: { DIGITSUM_THREADS: "1", NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Wait for a sweep process; its exit code, the signal that ended it, and its output. */
async function finish(child: Deno.ChildProcess) {
  const { code, signal, stdout, stderr } = await child.output();
  return { code, signal, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/** The numbers of a finished sweep folder: its tables and every run's accuracies and history. */
async function numbersOf(out: string) {
  const results = await collectResults(out);
  return {
    tables: results.tables,
    runs: results.runs.map((r) => ({
      key: r.key,
      status: r.status,
      accuracy: r.accuracy,
      history: r.history.map((e: EpochRecord) => [e.epoch, e.trainLoss, e.valAccuracy]),
    })),
  };
}

let reference: Promise<Awaited<ReturnType<typeof numbersOf>>> | undefined;
/** Wall milliseconds of the uninterrupted sweep. */
let referenceMs = 0;
/** The uninterrupted sweep of the quick grid. */
function referenceNumbers() {
  reference ??= (async () => {
    await data();
    const out = join(ROOT, "reference");
    const started = performance.now();
    const run = await finish(spawnSweep(out));
    referenceMs = performance.now() - started;
    assert.equal(run.code, 0, run.err);
    return await numbersOf(out);
  })();
  return reference;
}

/** The finished runs' records of a sweep folder (every result.json must be readable). */
async function doneRecords(out: string): Promise<Map<string, RunRecord>> {
  const done = new Map<string, RunRecord>();
  for (const key of KEYS) {
    const record = await readRunRecord(join(out, "runs", key));
    if (record?.status === "done") done.set(key, record);
  }
  return done;
}

/** What a killed writer may leave: temp files and half-swapped checkpoint folders. */
async function leftovers(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = join(path, entry.name);
      if (/\.tmp$|\.tmp-|\.old-|\.merge-/.test(entry.name)) found.push(full);
      else if (entry.isDirectory) await walk(full);
    }
  };
  await walk(dir);
  return found;
}

/** The numbers a run record keeps, for "unchanged" comparisons. */
function recordNumbers(record: RunRecord) {
  return JSON.stringify([
    record.accuracy,
    record.history?.map((e) => [e.trainLoss, e.valAccuracy]),
  ]);
}

/** Most kills in one round (then the round's sweep may finish and a new one starts). */
const KILLS_PER_ROUND = 8;

Deno.test("the sweep survives SIGKILL at random moments and inside every kind of write", async () => {
  const expected = await referenceNumbers();
  const rng = new FuzzRandom("kills");
  const survived: string[] = [];
  let attempts = 0;
  let rounds = 0;
  // Rounds: a fresh folder, killed again and again until the sweep gets through, so that the
  // kills fall on every phase (start, training, checkpoints, records, report) many times.
  while (survived.length < KILLS) {
    rounds += 1;
    const out = join(ROOT, `killed_${rounds}`);
    const done = new Map<string, string>(); // key -> numbers of its record when first seen done
    let lastMs = referenceMs;
    let killsThisRound = 0;
    while (true) {
      attempts += 1;
      assert.ok(attempts < KILLS * 4 + 20, `only ${survived.length} kills in ${attempts} attempts`);
      const wantKill = killsThisRound < KILLS_PER_ROUND && survived.length < KILLS;
      const timed = wantKill && rng.chance(0.5);
      const [point, reached] = rng.pick(KILL_POINTS);
      const at = 1 + rng.below(reached);
      const env: Record<string, string> = wantKill && !timed
        ? { DIGITSUM_KILL_AT: `${point}:${at}` }
        : {};
      const started = performance.now();
      const child = spawnSweep(out, { env });
      const delay = rng.below(Math.round(lastMs));
      const timer = timed ? setTimeout(() => child.kill("SIGKILL"), delay) : undefined;
      const result = await finish(child);
      clearTimeout(timer);
      if (result.signal === "SIGKILL") {
        survived.push(timed ? `timed (${delay} ms)` : `${point} #${at}`);
        killsThisRound += 1;
      } else {
        assert.equal(result.code, 0, `an attempt that was not killed must succeed: ${result.err}`);
        lastMs = performance.now() - started;
      }
      // Nothing finished is ever lost or changed, and every record stays readable.
      const now = await doneRecords(out);
      for (const [key, numbers] of done) {
        assert.ok(now.has(key), `${key} was done and is not any more (after ${survived.at(-1)})`);
        assert.equal(recordNumbers(now.get(key)!), numbers, `${key} changed`);
      }
      for (const [key, record] of now) if (!done.has(key)) done.set(key, recordNumbers(record));
      if (result.code === 0) break; // this round's sweep got through
    }
    assert.deepEqual(await numbersOf(out), expected, `round ${rounds}: tables differ`);
    assert.deepEqual(await leftovers(out), [], "a killed writer's leftovers are cleaned up");
  }
  const byKind = new Map<string, number>();
  for (const kill of survived) {
    const kind = kill.replace(/ #\d+| \(\d+ ms\)/g, "");
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
  }
  console.log(
    `faults: ${survived.length} SIGKILLs survived in ${attempts} attempts over ${rounds} ` +
      `rounds (${[...byKind].map(([k, n]) => `${n} ${k}`).join(", ")}); every round's tables ` +
      "equal the uninterrupted run's",
  );
});

// ---------------------------------------------------------------------------------------------
// Full disk, read-only folder, deleted state: these mount file systems.

/** Why file systems cannot be mounted here, or `undefined` when they can. */
async function mountProblem(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (mount needs root)";
  const dir = await Deno.makeTempDir({ prefix: "digitsum_mount_probe_" });
  try {
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
      stderr: "piped",
    }).output().catch((error) => ({
      success: false,
      stderr: new TextEncoder().encode(String(error)),
    }));
    if (!mount.success) return `mount -t tmpfs failed: ${decoder.decode(mount.stderr).trim()}`;
    await sh("umount", dir);
    return undefined;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Run a command; throws with its output when it fails. */
async function sh(command: string, ...args: string[]): Promise<void> {
  const result = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!result.success) {
    throw new Error(`${command} ${args.join(" ")}: ${decoder.decode(result.stderr).trim()}`);
  }
}

const MOUNT_PROBLEM = await mountProblem();
const REQUIRED = Deno.env.get("CI") === "true";
if (MOUNT_PROBLEM && !REQUIRED) {
  console.log(`faults_test: skipping the full-disk and read-only tests: ${MOUNT_PROBLEM}`);
}

/** A test that mounts: required with CI=true, skipped with the reason otherwise. */
function mountTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: MOUNT_PROBLEM !== undefined && !REQUIRED,
    fn: async () => {
      assert.equal(MOUNT_PROBLEM, undefined, `CI=true requires mounting: ${MOUNT_PROBLEM}`);
      await fn();
    },
  });
}

/** Bytes free on the file system of `dir` (from `df`). */
async function freeBytes(dir: string): Promise<number> {
  const { stdout } = await new Deno.Command("df", {
    args: ["-B1", "--output=avail", dir],
    stdout: "piped",
  })
    .output();
  return Number(decoder.decode(stdout).trim().split("\n")[1]);
}

/** Fill a file system until about `left` bytes are free (a file of zeros, written in chunks). */
async function fillUntil(dir: string, left: number): Promise<string> {
  const filler = join(dir, "filler");
  const chunk = new Uint8Array(16 * 2 ** 20);
  const file = await Deno.open(filler, { write: true, create: true, truncate: true });
  try {
    for (let free = await freeBytes(dir); free > left; free = await freeBytes(dir)) {
      const n = Math.min(chunk.length, free - left);
      for (let at = 0; at < n;) at += await file.write(chunk.subarray(at, n));
    }
  } finally {
    file.close();
  }
  return filler;
}

mountTest(
  "a full disk stops the sweep with a clear error, keeps earlier results, resumes when space is back",
  async () => {
    const expected = await referenceNumbers();
    const disk = join(ROOT, "disk");
    await Deno.mkdir(disk);
    await sh("mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", disk);
    try {
      const out = join(disk, "sweep");
      // Seed 0 first, with room: its run and report are the earlier results.
      const first = await finish(spawnSweep(out, { seeds: "0" }));
      assert.equal(first.code, 0, first.err);
      const report = await Deno.readFile(join(out, "RESULTS.md"));
      const record = await Deno.readFile(join(out, "runs", KEYS[0], "result.json"));
      // Then the whole grid with too little room, at two levels: the state of the first epoch
      // does not fit (~83 MB with Adam's moments), then a later write does not.
      const stops: string[] = [];
      for (const left of [40e6, 150e6]) {
        const filler = await fillUntil(disk, left);
        const full = await finish(spawnSweep(out));
        await Deno.remove(filler);
        assert.equal(full.code, 1, `a full disk must stop the sweep: ${full.out}`);
        assert.match(full.err, /^sweep: .*No space left on device/m);
        assert.match(
          full.err,
          /The sweep stopped: .*sweep cannot be written\. Finished runs and completed epochs are intact/,
        );
        assert.doesNotMatch(full.err, /\n\s+at /, "no stack trace");
        stops.push(/^sweep: .*$/m.exec(full.err)![0].replaceAll(disk, "<disk>").slice(0, 200));
        // Earlier results are untouched and readable; nothing was recorded for the stopped run.
        assert.deepEqual(await Deno.readFile(join(out, "RESULTS.md")), report);
        assert.deepEqual(await Deno.readFile(join(out, "runs", KEYS[0], "result.json")), record);
        assert.equal((await readRunRecord(join(out, "runs", KEYS[1])))?.status, undefined);
        await initBackend("wasm", { quiet: true, threads: 1 });
        (await loadCheckpoint(join(out, "runs", KEYS[0], "checkpoint"))).model.dispose();
        assert.deepEqual(await leftovers(out), [], "no temp files left");
      }
      // Space is back: the same command finishes, with the uninterrupted run's numbers.
      const resumed = await finish(spawnSweep(out));
      assert.equal(resumed.code, 0, resumed.err);
      assert.deepEqual(await numbersOf(out), expected);
      console.log(`faults: disk full stopped the sweep twice:\n  ${stops.join("\n  ")}`);
    } finally {
      await sh("umount", disk);
    }
  },
);

mountTest(
  "a read-only output folder is refused with a clear error and left as it was",
  async () => {
    await referenceNumbers();
    const out = join(ROOT, "readonly");
    await sh("cp", "-a", join(ROOT, "reference"), out);
    const before = await listing(out);
    await sh("mount", "--bind", out, out);
    try {
      await sh("mount", "-o", "remount,ro,bind", out);
      for (const args of [[], ["--report-only"]]) {
        const result = await finish(spawnSweep(out, { args }));
        assert.equal(result.code, 1, result.out);
        assert.match(result.err, /^sweep: .*Read-only file system/m, args.join(" "));
        assert.match(result.err, /The sweep stopped: .* cannot be written/);
      }
      // A new sweep into an empty read-only folder.
      const empty = join(ROOT, "empty_ro");
      await Deno.mkdir(empty);
      await sh("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", empty);
      try {
        const fresh = await finish(spawnSweep(join(empty, "sweep")));
        assert.equal(fresh.code, 1);
        assert.match(
          fresh.err,
          /^sweep: Cannot create directory .*empty_ro\/sweep.*Read-only file system/m,
        );
      } finally {
        await sh("umount", empty);
      }
    } finally {
      await sh("umount", out);
    }
    assert.deepEqual(await listing(out), before, "the folder is as it was");
  },
);

/** Every file of a folder with its size and modification time. */
async function listing(dir: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = join(path, entry.name);
      if (entry.isDirectory) await walk(full);
      else {
        const info = await Deno.stat(full);
        files.push(`${full} ${info.size} ${info.mtime?.getTime()}`);
      }
    }
  };
  await walk(dir);
  return files.sort();
}

Deno.test("a run whose state folder is deleted while it resumes still ends with the same numbers", async () => {
  const expected = await referenceNumbers();
  const wanted = expected.runs.find((r) => r.key === KEYS[0]);
  for (const moment of ["during the resume", "before the resume"]) {
    const out = join(ROOT, `deleted_${moment.split(" ")[0]}`);
    const runDir = join(out, "runs", KEYS[0]);
    // Killed as the second epoch's state is written: the state holds epoch 1.
    const killed = await finish(
      spawnSweep(out, { seeds: "0", env: { DIGITSUM_KILL_AT: "checkpoint:2" } }),
    );
    assert.equal(killed.signal, "SIGKILL");
    const state = join(runDir, "state");
    assert.ok((await Deno.stat(join(state, "model.json"))).isFile);
    if (moment === "before the resume") await Deno.remove(state, { recursive: true });
    const child = spawnSweep(out, { seeds: "0" });
    if (moment === "during the resume") {
      // As soon as the resumed run has loaded its state, the state folder goes.
      const deadline = Date.now() + 120_000;
      while (!(await Deno.readTextFile(join(runDir, "log.txt"))).includes("Resuming")) {
        assert.ok(Date.now() < deadline, "the run never resumed");
        await new Promise((r) => setTimeout(r, 20));
      }
      await Deno.remove(state, { recursive: true });
    }
    const result = await finish(child);
    assert.equal(result.code, 0, result.err);
    const runs = (await numbersOf(out)).runs;
    assert.deepEqual(runs.find((r) => r.key === KEYS[0]), wanted, moment);
  }
  // A finished run whose checkpoint was deleted keeps its results, and the sweep says so.
  const out = join(ROOT, "deleted_during");
  await Deno.remove(join(out, "runs", KEYS[0], "checkpoint"), { recursive: true });
  const again = await finish(spawnSweep(out, { seeds: "0" }));
  assert.equal(again.code, 0, again.err);
  assert.match(
    again.out,
    /Note: cnn-regressor_0 is done but .*checkpoint is missing; its results stand/,
  );
});
