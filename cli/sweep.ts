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
import { parseIntFlag, parseListFlag, parseSeedsFlag, runMain } from "../lib/cli/args.ts";
import {
  parseTrainingFlags,
  TRAINING_FLAGS,
  trainingFlagsHelp,
} from "../lib/cli/training_flags.ts";
import { modelKinds } from "../lib/models/mod.ts";
import { writeReport } from "../lib/results/report.ts";
import { formatDuration } from "../lib/runtime/progress.ts";
import { installStopHandler } from "../lib/runtime/signals.ts";
import {
  formatConfig,
  parseShard,
  PRESETS,
  resolveConfig,
  SWEEP_DEFAULTS,
  type SweepConfig,
} from "../lib/sweep/config.ts";
import { mergeSweeps } from "../lib/sweep/merge.ts";
import { runSweep, storageStopped, type SweepSummary } from "../lib/sweep/run.ts";
import { runWorkers } from "../lib/sweep/workers.ts";

const USAGE = `Usage: deno task sweep [options]
       deno task sweep --merge DIR... --out DIR

Trains every model x seed of the grid (resumable), then writes <out>/RESULTS.md, results.json,
report.html and figures/. Re-running the same command skips finished runs and resumes an
interrupted one from its last completed epoch.

Grid and training (defaults: the study):
  --models LIST     comma-separated model kinds (default ${SWEEP_DEFAULTS.models.join(",")};
                    known: ${modelKinds().join(", ")})
  --seeds LIST      comma-separated seeds (default ${SWEEP_DEFAULTS.seeds.join(",")})
${
  trainingFlagsHelp({
    epochs: String(SWEEP_DEFAULTS.epochs),
    limit: "training images per run (validation gets a quarter)",
    batchSize: SWEEP_DEFAULTS.batchSize,
    learningRate: String(SWEEP_DEFAULTS.learningRate),
    dataDir: SWEEP_DEFAULTS.dataDir,
    out: `output folder (default ${SWEEP_DEFAULTS.out}; --quick: ${PRESETS.quick.overrides.out})`,
  })
}
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

/** The sweep's flags: the shared training flags, the grid, the processes, the outputs. */
const OPTIONS = {
  models: { type: "string" },
  seeds: { type: "string" },
  ...TRAINING_FLAGS,
  shard: { type: "string" },
  worker: { type: "string" }, // internal: the part of the shard a --workers child runs
  workers: { type: "string" },
  merge: { type: "boolean" },
  "report-only": { type: "boolean" },
  "no-report": { type: "boolean" },
  "keep-state": { type: "boolean" },
  "no-png": { type: "boolean" },
  help: { type: "boolean", short: "h" },
  ...Object.fromEntries(Object.keys(PRESETS).map((name) => [name, { type: "boolean" as const }])),
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>[
  "values"
];

/** `--merge DIR... --out DIR`: combine sweep folders, then report on the result. */
async function merge(inputs: string[], out: string | undefined, png: boolean): Promise<number> {
  if (!out) throw new Error("--merge needs --out DIR (where the combined sweep goes)");
  if (!inputs.length) throw new Error("--merge needs the sweep folders to combine");
  outDir = out;
  if (inputs.some((p) => resolve(p) === resolve(out))) {
    throw new Error(`--out ${out} is also an input: merge into a new folder`);
  }
  await mergeSweeps(inputs, out);
  await report(out, png);
  return 0;
}

/** The configuration the flags ask for (defaults, then at most one preset, then flags). */
function configFrom(values: Values): { config: SweepConfig; preset?: string } {
  const presets = Object.keys(PRESETS).filter((name) => (values as Record<string, unknown>)[name]);
  if (presets.length > 1) throw new Error(`Choose one preset, got --${presets.join(" --")}`);
  const preset = presets[0];
  const flags = parseTrainingFlags(values);
  const config = resolveConfig({
    ...flags,
    models: parseListFlag(values.models, "models"),
    seeds: parseSeedsFlag(values.seeds),
    backend: flags.backend ?? Deno.env.get("DIGITSUM_BACKEND"),
  }, preset);
  return { config, preset };
}

/** The closing lines of a sweep: what it did, and why runs were skipped or failed. */
function summaryLines(summary: SweepSummary, wallTime: string): string {
  const lines = [
    `Sweep ${summary.failed.length ? "ended with failures" : "finished"} in ${wallTime}: ` +
    `${summary.finished.length} run(s) trained, ${summary.alreadyDone.length} already done, ` +
    `${summary.skipped.length} skipped, ${summary.failed.length} failed.`,
  ];
  const reasons = new Map<string, string[]>();
  for (const { key, reason } of [...summary.skipped, ...summary.failed]) {
    reasons.set(reason, [...(reasons.get(reason) ?? []), key]);
  }
  for (const [reason, keys] of reasons) lines.push(`  ${keys.join(", ")}: ${reason}`);
  return lines.join("\n");
}

/** Run the grid in this process (or its `--worker` part), stopping on the first Ctrl-C. */
async function sweepHere(config: SweepConfig, values: Values, png: boolean): Promise<number> {
  const started = performance.now();
  let stopRequested = false;
  const stop = installStopHandler(() => stopRequested = true);
  const summary = await runSweep(config, {
    shard: values.shard ? parseShard(values.shard) : undefined,
    worker: values.worker ? parseShard(values.worker, "--worker") : undefined,
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
  console.log(summaryLines(summary, wallTime()));
  return summary.failed.length ? 1 : 0;
}

/** `--workers N`: the grid in N child processes, then the report. */
async function sweepInWorkers(
  config: SweepConfig,
  workers: number,
  values: Values,
  png: boolean,
): Promise<number> {
  if (values.worker) throw new Error("--workers and --worker cannot be combined");
  const started = performance.now();
  const { code, stopped } = await runWorkers(config, workers, {
    script: new URL(import.meta.url).pathname,
    shard: values.shard ? parseShard(values.shard) : undefined,
    keepState: !!values["keep-state"],
  });
  if (stopped) console.log(`Stopped. ${resumeHint()}`);
  else if (!values["no-report"]) await report(config.out, png);
  console.log(`Wall time ${formatDuration((performance.now() - started) / 1000)}.`);
  return code;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: OPTIONS,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const png = !values["no-png"];
  if (values.merge) return await merge(positionals, values.out, png);
  if (positionals.length) {
    throw new Error(`Unexpected argument(s) ${positionals.join(" ")} (folders are for --merge)`);
  }
  const { config, preset } = configFrom(values);
  outDir = config.out;
  if (values["report-only"]) {
    await report(config.out, png);
    return 0;
  }
  const workers = parseIntFlag(values.workers, "workers");
  if (values.shard) parseShard(values.shard); // a bad --shard fails before anything is printed
  if (values.worker) parseShard(values.worker, "--worker");
  console.log(formatConfig(config, preset));
  if (workers !== undefined && workers > 1) {
    return await sweepInWorkers(config, workers, values, png);
  }
  return await sweepHere(config, values, png);
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
