/**
 * `deno task sweep`: the whole study (models x seeds) headless and resumable, with tables,
 * figures and a self-contained HTML report. See docs/SWEEP.md.
 *
 * ```
 * deno task sweep                      # the study: 3 models x seeds 0, 10, 42, 15 epochs
 * deno task sweep --quick              # a few minutes: limit 512, 1 epoch, runs/sweep_quick
 * deno task sweep --shard 2/3          # the 2nd of 3 disjoint parts of the grid
 * deno task sweep --workers 2          # 2 runs at a time on this machine
 * deno task sweep --merge a b --out c  # combine shard outputs
 * deno task sweep --report-only        # rebuild RESULTS.md / report from finished runs
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { ensureDir } from "../lib/fsutil.ts";
import { modelKinds } from "../lib/models.ts";
import { formatDuration, ProgressBar } from "../lib/progress.ts";
import { writeReport } from "../lib/report.ts";
import {
  formatConfig,
  formatRunLine,
  mergeSweeps,
  parseShard,
  prepareOutDir,
  PRESETS,
  readJsonFile,
  readRunRecord,
  resolveConfig,
  RUN_FILES,
  runSweep,
  selectShard,
  type Shard,
  storageStopped,
  SWEEP_DEFAULTS,
  type SweepConfig,
  sweepGrid,
} from "../lib/sweep.ts";
import {
  parseIntFlag,
  parseLimitFlag,
  parseListFlag,
  parsePositiveFlag,
  parseSeedsFlag,
  runMain,
} from "../lib/cli.ts";

const USAGE = `Usage: deno task sweep [options]
       deno task sweep --merge DIR... --out DIR

Trains every model x seed of the grid (resumable), then writes <out>/RESULTS.md, results.json,
report.html and figures/. Re-running the same command skips finished runs and resumes an
interrupted one from its last completed epoch.

Grid and training (defaults: the study):
  --models LIST     comma-separated model kinds (default ${SWEEP_DEFAULTS.models.join(",")};
                    known: ${modelKinds().join(", ")})
  --seeds LIST      comma-separated seeds (default ${SWEEP_DEFAULTS.seeds.join(",")})
  --epochs N        epochs per run (default ${SWEEP_DEFAULTS.epochs})
  --limit N|all     training images per run (validation gets a quarter); default all
  --test-limit N|all  held-out test images evaluated per run; default all
  --batch-size N    batch size (default ${SWEEP_DEFAULTS.batchSize})
  --lr X            Adam learning rate (default ${SWEEP_DEFAULTS.learningRate})
  --backend NAME    auto|tensorflow|webgpu|wasm|cpu (default $DIGITSUM_BACKEND or auto)
  --data-dir DIR    folder of the .npy files (default ${SWEEP_DEFAULTS.dataDir})
  --out DIR         output folder (default ${SWEEP_DEFAULTS.out}; --quick: ${PRESETS.quick.overrides.out})
Presets:
${
  Object.entries(PRESETS).map(([name, p]) =>
    `  --${name.padEnd(15)} ${JSON.stringify(p.overrides)}\n${" ".repeat(20)}${p.reason}`
  ).join("\n")
}
More than one process:
  --shard I/N       run only the I-th of N disjoint parts of the grid (run k goes to k % N + 1)
  --workers N       run N runs at a time on this machine (child processes, logs in <out>/logs/)
  --merge DIR...    combine sweep folders (e.g. shards) into --out; refuses conflicting results
Other:
  --report-only     only rebuild the tables, report and figures of --out
  --no-report       do not write the report at the end (e.g. for shards)
  --keep-state      keep each finished run's resumable state/ (default: removed)
  --no-png          write SVG figures only
  -h, --help        this text
`;

/** Flags that reproduce a resolved configuration exactly (for child processes). */
function configArgs(config: SweepConfig): string[] {
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

/**
 * Signals closer together than this are one interrupt that arrived twice: `deno task sweep`
 * forwards to the sweep the signal that the terminal (Ctrl-C signals the whole process group) or
 * SLURM (requeue, scancel and time limits signal every process of a job) also sends it directly.
 */
export const REPEAT_WINDOW_MS = 1000;

/** Options of {@link interruptHandler}; the defaults are the process's own. */
export interface InterruptOptions {
  /** Exits the process (default `Deno.exit`). */
  exit?: (code: number) => void;
  /** Milliseconds on a monotonic clock (default `performance.now`). */
  now?: () => number;
  /** Where the messages go (default `console.error`). */
  log?: (line: string) => void;
}

/**
 * What the sweep does with SIGINT and SIGTERM. The first one calls `onStop` (the sweep stops after
 * the current epoch, once its state is saved). Another Ctrl-C (SIGINT) more than
 * {@link REPEAT_WINDOW_MS} later exits at once. Further SIGTERMs are ignored: whoever sends SIGTERM
 * (SLURM, systemd, `docker stop`) sends SIGKILL when it stops waiting, and SLURM's SIGTERM reaches
 * a sweep started by `deno task` twice.
 *
 * @returns The listener, called with the signal that arrived.
 */
export function interruptHandler(
  onStop: () => void,
  options: InterruptOptions = {},
): (signal: Deno.Signal) => void {
  const exit = options.exit ?? ((code: number) => Deno.exit(code));
  const now = options.now ?? (() => performance.now());
  const log = options.log ?? console.error;
  let first: number | undefined;
  return (signal) => {
    if (first === undefined) {
      first = now();
      log(
        signal === "SIGTERM"
          ? "\nSIGTERM: stopping after the current epoch (its state is saved then)."
          : "\nInterrupt: stopping after the current epoch (its state is saved then). " +
            "Press Ctrl-C again to quit at once.",
      );
      onStop();
      return;
    }
    if (signal !== "SIGINT" || now() - first < REPEAT_WINDOW_MS) return;
    log("\nSecond interrupt: exiting now. The run resumes from its last completed epoch.");
    exit(130);
  };
}

/** Stop flag set by the first Ctrl-C / SIGTERM; see {@link interruptHandler}. */
function installStopHandler(onStop: () => void): { stopped: () => boolean } {
  let stop = false;
  const handler = interruptHandler(() => {
    stop = true;
    onStop();
  });
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => handler(signal));
  return { stopped: () => stop };
}

function resumeHint(): string {
  return `Resume with the same command: deno task sweep ${Deno.args.join(" ")}`.trimEnd();
}

async function report(out: string, png: boolean): Promise<void> {
  const started = performance.now();
  const { files, pngError, results } = await writeReport(out, { png });
  const figures = files.filter((f) => f.includes(`${join("figures", "")}`));
  const svgs = figures.filter((f) => f.endsWith(".svg")).length;
  const pngs = figures.filter((f) => f.endsWith(".png")).length;
  const done = results.runs.filter((r) => r.status === "done").length;
  console.log(
    [
      `Report written in ${formatDuration((performance.now() - started) / 1000)} ` +
      `(${done}/${results.runs.length} runs finished):`,
      `  tables:  ${join(out, "RESULTS.md")}`,
      `  data:    ${join(out, "results.json")}`,
      `  report:  ${join(out, "report.html")} (self-contained, opens offline)`,
      `  figures: ${join(out, "figures")}/ (${svgs} svg, ${pngs} png${
        pngError ? "; no PNG: " + pngError : ""
      })`,
      `  runs:    ${
        join(out, "runs")
      }/<model>_<seed>/ (checkpoint/, history.json, result.json, log.txt)`,
    ].join("\n"),
  );
}

/** Copy a child's output stream into its log file. */
async function pump(stream: ReadableStream<Uint8Array>, file: Deno.FsFile): Promise<void> {
  for await (const chunk of stream) {
    let written = 0;
    while (written < chunk.length) written += await file.write(chunk.subarray(written));
  }
}

/** `--workers N`: N child sweeps, each with its part of the grid; progress from the run files. */
async function runWorkers(
  config: SweepConfig,
  workers: number,
  options: { shard?: Shard; keepState: boolean; png: boolean; report: boolean },
): Promise<number> {
  const grid = sweepGrid(config);
  await prepareOutDir(config, grid); // refuse conflicts once, before any child starts
  const selected = selectShard(grid, options.shard);
  const logDir = join(config.out, "logs");
  await ensureDir(logDir);
  const script = new URL(import.meta.url).pathname;
  const children: Array<{ process: Deno.ChildProcess; log: string; pumps: Promise<void> }> = [];
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
  for (let w = 1; w <= count; w++) {
    const log = join(logDir, `worker_${w}.log`);
    await Deno.writeTextFile(log, `deno ${["run", "-A", script].join(" ")} ...\n`);
    const args = [
      "run",
      "-A",
      script,
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
    children.push({ process, log, pumps });
    console.log(`worker ${w}/${count}: pid ${process.pid}, log ${log}`);
  }
  // Progress: epochs recorded in the runs' files; a line per run that ends while we watch.
  const seen = new Map<string, string>(); // run key -> finishedAt of its result.json
  const poll = async (report: boolean): Promise<number> => {
    let epochs = 0;
    for (const run of selected) {
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
        if (report) await bar.finish(formatRunLine(record)); // replaces the bar on a terminal
      }
    }
    return epochs;
  };
  const bar = new ProgressBar(1, { label: "grid" });
  const initial = await poll(false);
  bar.total = Math.max(1, selected.length * config.epochs - initial);
  let running = true;
  const statuses = Promise.all(children.map((c) => c.process.status)).finally(() =>
    running = false
  );
  while (running) {
    await Promise.race([statuses, new Promise((r) => setTimeout(r, 2000))]);
    const epochs = await poll(true);
    await bar.update(epochs - initial, `epochs; ${seen.size}/${selected.length} runs ended`);
  }
  await bar.finish();
  await Promise.all(children.map((c) => c.pumps));
  const codes = (await statuses).map((s) => s.code);
  const failedWorkers = codes.map((code, i) => ({ code, i })).filter((c) => c.code !== 0);
  if (!stop.stopped()) {
    for (const { code, i } of failedWorkers) {
      console.error(`worker ${i + 1} exited with code ${code}; see ${children[i].log}`);
    }
  }
  if (stop.stopped()) {
    console.log(`Stopped. ${resumeHint()}`);
    return 130;
  }
  if (options.report) await report(config.out, options.png);
  return failedWorkers.length ? 1 : 0;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      models: { type: "string" },
      seeds: { type: "string" },
      epochs: { type: "string" },
      limit: { type: "string" },
      "test-limit": { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      backend: { type: "string" },
      "data-dir": { type: "string" },
      out: { type: "string" },
      shard: { type: "string" },
      worker: { type: "string" }, // internal: the part of the shard a --workers child runs
      workers: { type: "string" },
      merge: { type: "boolean" },
      "report-only": { type: "boolean" },
      "no-report": { type: "boolean" },
      "keep-state": { type: "boolean" },
      "no-png": { type: "boolean" },
      help: { type: "boolean", short: "h" },
      ...Object.fromEntries(
        Object.keys(PRESETS).map((name) => [name, { type: "boolean" as const }]),
      ),
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const png = !values["no-png"];
  if (values.merge) {
    if (!values.out) throw new Error("--merge needs --out DIR (where the combined sweep goes)");
    if (!positionals.length) throw new Error("--merge needs the sweep folders to combine");
    const out = values.out;
    outDir = out;
    if (positionals.some((p) => resolve(p) === resolve(out))) {
      throw new Error(`--out ${out} is also an input: merge into a new folder`);
    }
    await mergeSweeps(positionals, out);
    await report(out, png);
    return 0;
  }
  if (positionals.length) {
    throw new Error(`Unexpected argument(s) ${positionals.join(" ")} (folders are for --merge)`);
  }
  const presets = Object.keys(PRESETS).filter((name) => (values as Record<string, unknown>)[name]);
  if (presets.length > 1) throw new Error(`Choose one preset, got --${presets.join(" --")}`);
  const preset = presets[0];
  const config = resolveConfig({
    models: parseListFlag(values.models, "models"),
    seeds: parseSeedsFlag(values.seeds),
    epochs: parseIntFlag(values.epochs, "epochs"),
    limit: parseLimitFlag(values.limit, "limit"),
    testLimit: parseLimitFlag(values["test-limit"], "test-limit"),
    batchSize: parseIntFlag(values["batch-size"], "batch-size"),
    learningRate: parsePositiveFlag(values.lr, "lr"),
    backend: values.backend ?? Deno.env.get("DIGITSUM_BACKEND"),
    dataDir: values["data-dir"],
    out: values.out,
  }, preset);
  outDir = config.out;
  if (values["report-only"]) {
    await report(config.out, png);
    return 0;
  }
  const shard = values.shard ? parseShard(values.shard) : undefined;
  const worker = values.worker ? parseShard(values.worker, "--worker") : undefined;
  const workers = parseIntFlag(values.workers, "workers");
  const started = performance.now();
  console.log(formatConfig(config, preset));
  if (workers !== undefined && workers > 1) {
    if (worker) throw new Error("--workers and --worker cannot be combined");
    const code = await runWorkers(config, workers, {
      shard,
      keepState: !!values["keep-state"],
      png,
      report: !values["no-report"],
    });
    console.log(`Wall time ${formatDuration((performance.now() - started) / 1000)}.`);
    return code;
  }

  let stopRequested = false;
  const stop = installStopHandler(() => stopRequested = true);
  const summary = await runSweep(config, {
    shard,
    worker,
    keepState: !!values["keep-state"],
    shouldStop: () => stopRequested,
  });
  const wallTime = () => formatDuration((performance.now() - started) / 1000);
  if (summary.stopped || stop.stopped()) {
    console.log(
      `Stopped after ${wallTime()}: ${summary.finished.length} run(s) finished this time. ` +
        `Finished runs and completed epochs are saved in ${config.out}.\n${resumeHint()}`,
    );
    return 130;
  }
  if (!values["no-report"]) await report(config.out, png);
  const lines = [
    `Sweep ${summary.failed.length ? "ended with failures" : "finished"} in ${wallTime()}: ` +
    `${summary.finished.length} run(s) trained, ${summary.alreadyDone.length} already done, ` +
    `${summary.skipped.length} skipped, ${summary.failed.length} failed.`,
  ];
  const reasons = new Map<string, string[]>();
  for (const { key, reason } of [...summary.skipped, ...summary.failed]) {
    reasons.set(reason, [...(reasons.get(reason) ?? []), key]);
  }
  for (const [reason, keys] of reasons) lines.push(`  ${keys.join(", ")}: ${reason}`);
  console.log(lines.join("\n"));
  return summary.failed.length ? 1 : 0;
}

/** The output folder of this call, for the message when it cannot be written. */
let outDir = SWEEP_DEFAULTS.out;

if (import.meta.main) {
  // A full disk or a read-only folder stops the sweep with what is safe and how to resume.
  await runMain(
    "sweep",
    () => main().catch((error) => Promise.reject(storageStopped(error, outDir))),
  );
}
