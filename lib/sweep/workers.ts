/**
 * `deno task sweep --workers N`: N child sweeps on this machine, each with its part of the grid
 * (`--worker i/N`), their output in `<out>/logs/worker_<i>.log`, progress read from the runs'
 * files.
 *
 * @module
 */
import { join } from "node:path";
import { ensureDir } from "../io/fsutil.ts";
import { readJsonFile } from "../io/json.ts";
import { formatRunLine, readRunRecord, RUN_FILES } from "../results/record.ts";
import { ProgressBar } from "../runtime/progress.ts";
import { installStopHandler } from "../runtime/signals.ts";
import { type RunSpec, selectShard, type Shard, type SweepConfig, sweepGrid } from "./config.ts";
import { prepareOutDir } from "./run.ts";

/** Seconds between two looks at the runs' files. */
const POLL_SECONDS = 2;

/** Flags that reproduce a resolved configuration exactly (for child processes). */
export function configArgs(config: SweepConfig): string[] {
  return [
    "--models",
    config.models.join(","),
    "--seeds",
    config.seeds.join(","),
    "--epochs",
    String(config.epochs),
    "--limit",
    config.limit === null ? "all" : String(config.limit),
    "--test-limit",
    config.testLimit === null ? "all" : String(config.testLimit),
    "--batch-size",
    String(config.batchSize),
    "--lr",
    String(config.learningRate),
    "--backend",
    config.backend,
    "--data-dir",
    config.dataDir,
    "--out",
    config.out,
  ];
}

/** Options of {@link runWorkers}. */
export interface WorkerOptions {
  /** The sweep CLI the children run (`cli/sweep.ts`). */
  script: string;
  /** Only this shard of the grid. */
  shard?: Shard;
  /** Keep finished runs' `state/`. */
  keepState: boolean;
}

/** One child sweep: its process, its log and the copying of its output into the log. */
interface Worker {
  process: Deno.ChildProcess;
  log: string;
  pumps: Promise<void>;
}

/** Copy a child's output stream into its log file. */
async function pump(stream: ReadableStream<Uint8Array>, file: Deno.FsFile): Promise<void> {
  for await (const chunk of stream) {
    let written = 0;
    while (written < chunk.length) written += await file.write(chunk.subarray(written));
  }
}

/** Start child `w` of `count`, its output appended to its log. */
async function startWorker(
  config: SweepConfig,
  w: number,
  count: number,
  options: WorkerOptions,
): Promise<Worker> {
  const log = join(config.out, "logs", `worker_${w}.log`);
  await Deno.writeTextFile(log, `deno ${["run", "-A", options.script].join(" ")} ...\n`);
  const args = [
    "run",
    "-A",
    options.script,
    ...configArgs(config),
    ...(options.shard ? ["--shard", `${options.shard.index}/${options.shard.count}`] : []),
    "--worker",
    `${w}/${count}`,
    "--no-report",
    ...(options.keepState ? ["--keep-state"] : []),
  ];
  const process = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    detached: true, // own process group: Ctrl-C reaches the parent, which forwards it once
  }).spawn();
  const file = await Deno.open(log, { append: true }); // O_APPEND: both streams interleave safely
  const pumps = Promise.all([pump(process.stdout, file), pump(process.stderr, file)])
    .then(() => file.close(), () => file.close());
  console.log(`worker ${w}/${count}: pid ${process.pid}, log ${log}`);
  return { process, log, pumps };
}

/**
 * Epochs recorded in the files of `runs` (a finished run counts all its epochs), and a line
 * through `report` for each run whose record is new since the last look (`seen`).
 */
async function recordedEpochs(
  runs: readonly RunSpec[],
  seen: Map<string, string>,
  report?: (line: string) => Promise<void>,
): Promise<number> {
  let epochs = 0;
  for (const run of runs) {
    const record = await readRunRecord(run.dir).catch(() => undefined);
    if (record && record.status !== "failed") epochs += run.config.epochs;
    else {
      const history = await readJsonFile<{ history: unknown[] }>(
        join(run.dir, RUN_FILES.history),
      ).catch(() => undefined);
      epochs += history?.history.length ?? 0;
    }
    if (record && seen.get(run.key) !== record.finishedAt) {
      seen.set(run.key, record.finishedAt);
      await report?.(formatRunLine(record));
    }
  }
  return epochs;
}

/**
 * Run the grid (or a shard of it) in `workers` child processes and show one progress bar for
 * all of them until they end. The first Ctrl-C is forwarded to every child once.
 *
 * @returns `stopped` when interrupted; `code` 1 when a worker failed (each named with its log).
 */
export async function runWorkers(
  config: SweepConfig,
  workers: number,
  options: WorkerOptions,
): Promise<{ code: number; stopped: boolean }> {
  const grid = sweepGrid(config);
  await prepareOutDir(config, grid); // refuse conflicts once, before any child starts
  const selected = selectShard(grid, options.shard);
  await ensureDir(join(config.out, "logs"));
  const children: Worker[] = [];
  const stop = installStopHandler(() => {
    for (const child of children) {
      try {
        child.process.kill("SIGINT");
      } catch {
        // already exited
      }
    }
  });
  const count = Math.min(workers, Math.max(1, selected.length));
  for (let w = 1; w <= count; w++) children.push(await startWorker(config, w, count, options));
  // Progress: epochs recorded in the runs' files; a line per run that ends while we watch.
  const seen = new Map<string, string>(); // run key -> finishedAt of its result.json
  const bar = new ProgressBar(1, { label: "grid" });
  const initial = await recordedEpochs(selected, seen);
  bar.total = Math.max(1, selected.length * config.epochs - initial);
  let running = true;
  const statuses = Promise.all(children.map((c) => c.process.status)).finally(() =>
    running = false
  );
  while (running) {
    await Promise.race([statuses, new Promise((r) => setTimeout(r, POLL_SECONDS * 1000))]);
    const epochs = await recordedEpochs(selected, seen, (line) => bar.finish(line));
    await bar.update(epochs - initial, `epochs; ${seen.size}/${selected.length} runs ended`);
  }
  await bar.finish();
  await Promise.all(children.map((c) => c.pumps));
  const codes = (await statuses).map((s) => s.code);
  const failed = codes.map((code, i) => ({ code, i })).filter((c) => c.code !== 0);
  if (stop.stopped()) return { code: 130, stopped: true };
  for (const { code, i } of failed) {
    console.error(`worker ${i + 1} exited with code ${code}; see ${children[i].log}`);
  }
  return { code: failed.length ? 1 : 0, stopped: false };
}
