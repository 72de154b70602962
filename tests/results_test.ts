/**
 * The README's study block is generated from the committed run records (`deno task results`),
 * never typed: this test fails when the two disagree.
 */
import assert from "node:assert/strict";
import { studyBlock } from "../cli/results.ts";
import { PYTORCH_DIR, STUDY_DIR } from "../lib/results/record.ts";
import { README_MARKERS, replaceReadmeBlock } from "../lib/results/readme.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("README.md's study results equal what the committed records give", async () => {
  const readme = await Deno.readTextFile(`${root}README.md`);
  const block = await studyBlock(`${root}${STUDY_DIR}`, `${root}${PYTORCH_DIR}`);
  assert.equal(
    replaceReadmeBlock(readme, block),
    readme,
    "README.md is stale: run `deno task results --readme README.md`",
  );
});

Deno.test("replaceReadmeBlock() replaces only the marked block and refuses a README without it", () => {
  const text = `intro\n${README_MARKERS.begin}\nold\n${README_MARKERS.end}\noutro\n`;
  assert.equal(
    replaceReadmeBlock(text, "new"),
    `intro\n${README_MARKERS.begin}\n\nnew\n\n${README_MARKERS.end}\noutro\n`,
  );
  assert.throws(
    () => replaceReadmeBlock("no markers here", "new", "X.md"),
    /Cannot update X\.md: its study-results markers are missing/,
  );
});
