/**
 * The study's results from the committed run records: prints the README's study block, or
 * rewrites it (`--readme`), or checks that README.md shows exactly what the records say
 * (`--check`, run by the tests).
 *
 * deno task results [--study results/study] [--pytorch results/pytorch] [--readme | --check]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runMain } from "../lib/cli.ts";
import { writeTextAtomic } from "../lib/fsutil.ts";
import {
  collectResults,
  readmeResultsMarkdown,
  readRecordsIn,
  replaceReadmeBlock,
} from "../lib/report.ts";
import { assertSameData, describeData } from "../lib/sweep.ts";

/** Where the study's records are committed. */
export const STUDY_DIR = "results/study";
/** Where the PyTorch cross-check's records are committed. */
export const PYTORCH_DIR = "results/pytorch";

const USAGE =
  "Usage: deno task results [--study DIR] [--pytorch DIR] [--readme FILE | --check FILE]";

/** The README block for the records in `studyDir` and `pytorchDir`. */
export async function studyBlock(studyDir: string, pytorchDir: string): Promise<string> {
  const study = await collectResults(studyDir);
  const pytorch = await readRecordsIn(pytorchDir);
  assertSameData(pytorch, `the records of ${pytorchDir}`);
  const other = pytorch.find((r) => study.data && r.data.id !== study.data.id);
  if (other && study.data) {
    throw new Error(
      `Cannot compare ${studyDir} with ${pytorchDir}: the study runs used ` +
        `${describeData(study.data)}, ${other.key} in ${pytorchDir} ${describeData(other.data)}`,
    );
  }
  return readmeResultsMarkdown(study, pytorch, pytorchDir);
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
