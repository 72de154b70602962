/**
 * The results charts of the notebooks (accuracy by model, training curves) in a terminal, from
 * the sweep's `results.json` or, without it, the trained checkpoints: a table and text
 * stand-ins, or with `--plot window` (env `DIGITSUM_PLOT=window`) nodeplotlib's interactive
 * window, served offline (plotly.js from the installed npm package).
 *
 *   deno run -A tools/show_charts.ts [--plot window|inline] [--results FILE] [--no-open]
 *
 * With `--plot window` the process serves the page until it is closed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  interactiveRequested,
  PLOT_ENV,
  readSweepResults,
  repoPath,
  showAccuracyBars,
  showAccuracyTable,
  showInteractive,
  showTrainingCurves,
  studyModels,
  studyRunsOnRecord,
} from "../lib/notebook/mod.ts";
import type { RunOutcome } from "../lib/results/record.ts";

const HELP =
  `Usage: deno run -A tools/show_charts.ts [--plot window|inline] [--results FILE] [--no-open]

  --plot window   open the charts in nodeplotlib's interactive window (offline)
  --plot inline   print text stand-ins (default; env ${PLOT_ENV} sets the default)
  --results FILE  the sweep's results (default runs/sweep/results.json, else trained_models/)
  --no-open       print the window's URL without starting a browser`;

/** Read the records to chart: `file` when given, else the committed study records. */
async function records(file: string | undefined): Promise<RunOutcome[]> {
  if (file) {
    const found = await readSweepResults(repoPath(file));
    if (!found) throw new Error(`Cannot read ${file}: no such file`);
    return found;
  }
  return await studyRunsOnRecord();
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      plot: { type: "string" },
      results: { type: "string" },
      "no-open": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.plot !== undefined) Deno.env.set(PLOT_ENV, values.plot);
  const window = interactiveRequested(); // validates --plot
  const found = await records(values.results);
  if (found.length === 0) {
    console.error("show_charts.ts: no runs on record (run 'deno task sweep' or a notebook)");
    return 1;
  }
  const models = studyModels().filter((m) => found.some((r) => r.model === m.kind));
  await showAccuracyTable(found, models);
  if (window) await showInteractive([], { open: !values["no-open"] }); // start it once
  await showAccuracyBars(found, models);
  await showTrainingCurves(found, models);
  if (window) {
    const opened = await showInteractive([], { open: false });
    if (opened) await opened.closed;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
