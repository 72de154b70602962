/**
 * The study's results from the committed run records: prints the README's study block, or
 * rewrites it (`--readme`), or checks that README.md shows exactly what the records say
 * (`--check`, run by the tests).
 *
 * deno task results [--study results/study] [--pytorch results/pytorch] [--readme | --check]
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runMain } from "../lib/cli/args.ts";
import { writeTextAtomic } from "../lib/io/fsutil.ts";
import { buildTable, collectResults, SPLITS } from "../lib/results/report.ts";
import {
  assertSameData,
  describeData,
  PYTORCH_DIR,
  readRecordsIn,
  STUDY_DIR,
} from "../lib/results/record.ts";
import { readmeResultsMarkdown, replaceReadmeBlock } from "../lib/results/readme.ts";

const USAGE =
  "Usage: deno task results [--study DIR] [--pytorch DIR] [--readme FILE | --check FILE]";

/** The README block for the records in `studyDir` and `pytorchDir`. */
export async function studyBlock(studyDir: string, pytorchDir: string): Promise<string> {
  const collected = await collectResults(studyDir);
  // Only finished runs are committed: an unfinished one shows as not run yet, as in a clean clone.
  const runs = collected.runs.map((r) =>
    r.status === "running" ? { ...r, status: "pending" as const, history: [] } : r
  );
  const study = {
    ...collected,
    runs,
    tables: Object.fromEntries(
      SPLITS.map((s) => [s, buildTable(runs, s, collected.models, collected.seeds)]),
    ) as typeof collected.tables,
  };
  const pytorch = await readRecordsIn(pytorchDir);
  assertSameData(pytorch, `the records of ${pytorchDir}`);
  const other = pytorch.find((r) => study.data && r.data.id !== study.data.id);
  if (other && study.data) {
    throw new Error(
      `Cannot compare ${studyDir} with ${pytorchDir}: the study runs used ` +
        `${describeData(study.data)}, ${other.key} in ${pytorchDir} ${describeData(other.data)}`,
    );
  }
  const root = new URL("../", import.meta.url).pathname;
  const names = {
    study: relative(root, resolve(studyDir)),
    pytorch: relative(root, resolve(pytorchDir)),
  };
  return await formatMarkdown(readmeResultsMarkdown(study, pytorch, names));
}

/** `text` as `deno fmt` formats Markdown under this project's deno.json (so the README stays clean). */
async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    cwd: new URL("../", import.meta.url).pathname,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`deno fmt could not format the block: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout).trimEnd();
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      study: { type: "string", default: STUDY_DIR },
      pytorch: { type: "string", default: PYTORCH_DIR },
      readme: { type: "string" },
      check: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const block = await studyBlock(values.study, values.pytorch);
  const file = values.readme ?? values.check;
  if (!file) {
    console.log(block);
    return 0;
  }
  const text = await Deno.readTextFile(file).catch((error) => {
    throw new Error(`Cannot read ${file}: ${error.message}`);
  });
  const updated = replaceReadmeBlock(text, block, file);
  if (values.check) {
    if (updated === text) {
      console.log(`${file}: the study results match the records in ${values.study}`);
      return 0;
    }
    console.error(
      `${file}: the study results differ from the records in ${values.study}; ` +
        "run `deno task results --readme README.md`",
    );
    return 1;
  }
  if (updated !== text) await writeTextAtomic(file, updated);
  console.log(`${file}: study results ${updated === text ? "already up to date" : "rewritten"}`);
  return 0;
}

if (import.meta.main) runMain("results", main);
