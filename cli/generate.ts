/**
 * `deno task generate`: builds the data set from MNIST (see lib/data/generate.ts).
 *
 * ```
 * deno task generate [--data-dir data] [--seed 1] [--force] [--test-only] [--out-prefix p]
 *                    [--count 10000] [--test-count 10000] [--samples docs/generated_samples.png]
 * ```
 *
 * Without `--force` it only fills in what is missing (like every command that needs data).
 * `--force` regenerates the requested files, but never overwrites files that MANIFEST.json does
 * not record as generated (such as the course's real files). `--test-only` writes only
 * `test_data.npy`/`test_lab.npy`, e.g. a second test set with another seed in another folder:
 * `deno task generate --test-only --seed 7 --data-dir /tmp/x`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { DEFAULT_DATA_DIR } from "../lib/constants.ts";
import { ensureDir, exists, writeFileAtomic } from "../lib/io/fsutil.ts";
import {
  COURSE_IMAGE_FILES,
  COURSE_LABEL_FILES,
  DEFAULT_GENERATOR_SEED,
  ensureDataset,
  MANIFEST_FILE,
  readManifest,
  renderSampleGrid,
  TEST_FILES,
  writeDataset,
} from "../lib/data/generate.ts";
import { readNpy } from "../lib/io/npy.ts";
import { encodePng } from "../lib/io/png.ts";
import { parseIntFlag, parseSeedFlag, runMain } from "../lib/cli/args.ts";

/** Usage text. */
const USAGE = `Usage: deno task generate [options]
  --data-dir DIR      output folder (default ${DEFAULT_DATA_DIR})
  --seed N            data set seed (default ${DEFAULT_GENERATOR_SEED})
  --force             regenerate even if the files exist (only files the generator wrote)
  --test-only         write only ${TEST_FILES.images} and ${TEST_FILES.labels}
  --out-prefix P      prefix every written file name (and the manifest) with P
  --count N           images per course file (default 10000)
  --test-count N      images in the test set (default 10000)
  --samples PATH      also render the first 20 images of the first written image file to a PNG
  -h, --help          this text`;

/** Entry point. */
async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      "data-dir": { type: "string", default: DEFAULT_DATA_DIR },
      seed: { type: "string" },
      force: { type: "boolean", default: false },
      "test-only": { type: "boolean", default: false },
      "out-prefix": { type: "string", default: "" },
      count: { type: "string" },
      "test-count": { type: "string" },
      samples: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const dataDir = values["data-dir"];
  const prefix = values["out-prefix"];
  const seed = parseSeedFlag(values.seed) ?? DEFAULT_GENERATOR_SEED;
  const imagesPerFile = parseIntFlag(values.count, "count");
  const testCount = parseIntFlag(values["test-count"], "test-count");
  const log = (line: string) => console.log(line);
  const started = performance.now();
  const sets: ("course" | "test")[] = values["test-only"] ? ["test"] : ["course", "test"];

  if (!values.force && !values["test-only"] && prefix === "") {
    const { generated } = await ensureDataset(dataDir, { seed, log, imagesPerFile, testCount });
    if (!generated) log(`${dataDir} already holds the data set; nothing to do (--force to redo)`);
  } else {
    const manifest = await readManifest(join(dataDir, prefix + MANIFEST_FILE));
    const names = [
      ...(sets.includes("course") ? [...COURSE_IMAGE_FILES, ...COURSE_LABEL_FILES] : []),
      ...(sets.includes("test") ? [TEST_FILES.images, TEST_FILES.labels] : []),
    ].map((name) => prefix + name);
    const present = [];
    for (const name of names) if (await exists(join(dataDir, name))) present.push(name);
    const foreign = present.filter((name) => manifest?.files[name] === undefined);
    if (foreign.length > 0) {
      throw new Error(
        `Refusing to overwrite ${foreign.map((f) => join(dataDir, f)).join(", ")}: not written ` +
          `by the generator (no entry in ${prefix + MANIFEST_FILE}). Move them away first.`,
      );
    }
    if (present.length > 0 && !values.force) {
      log(`${present.join(", ")} exist in ${dataDir}; nothing to do (--force to redo)`);
    } else {
      await ensureDir(dataDir);
      await writeDataset(dataDir, { sets, seed, imagesPerFile, testCount, prefix, log });
    }
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  if (values.samples) {
    const imagesFile = sets.includes("course")
      ? prefix + COURSE_IMAGE_FILES[0]
      : prefix + TEST_FILES.images;
    const labelsFile = sets.includes("course")
      ? prefix + COURSE_LABEL_FILES[0]
      : prefix + TEST_FILES.labels;
    const images = await readNpy(join(dataDir, imagesFile));
    const labels = await readNpy(join(dataDir, labelsFile));
    const grid = renderSampleGrid(images.data as Uint8Array, Array.from(labels.data, Number));
    await writeFileAtomic(values.samples, await encodePng(grid.gray, grid.width, grid.height));
    log(`wrote ${values.samples} (first 20 images of ${join(dataDir, imagesFile)})`);
  }
}

if (import.meta.main) await runMain("generate", () => main(Deno.args));
