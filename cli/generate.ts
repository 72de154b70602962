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
 * `--conditions DIR` writes the test conditions instead (lib/data/conditions.ts: MNIST test digits
 * drawn differently, for reporting only): `DIR/<condition>/test_data.npy`, `test_lab.npy`,
 * `test_digits.npy`, `test_ink.npy` and `MANIFEST.json`, and `DIR/CONDITIONS.json`, with `--count`
 * composites per condition (default 2000) and `--seed` (default 16); `--only a,b` picks
 * conditions; `--samples PATH` renders the first four of each:
 * `deno task generate --conditions data/conditions --samples docs/conditions_samples.png`.
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
import { parseIntFlag, parseListFlag, parseSeedFlag, runMain } from "../lib/cli/args.ts";
import {
  conditionByName,
  CONDITIONS,
  CONDITIONS_INDEX,
  conditionSamplesPng,
  type ConditionsIndex,
  DEFAULT_CONDITION_COUNT,
  DEFAULT_CONDITIONS_SEED,
  readConditions,
  writeConditions,
} from "../lib/data/conditions.ts";

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
  --conditions DIR    write the test conditions (MNIST test digits drawn differently; for
                      reporting only) into DIR instead; --count is composites per condition
                      (default ${DEFAULT_CONDITION_COUNT}), --seed the set's seed (default ${DEFAULT_CONDITIONS_SEED}),
                      --samples renders the first 4 of each condition
  --only A,B          with --conditions: only these (of ${CONDITIONS.map((c) => c.name).join(", ")})
  -h, --help          this text`;

/** Entry point. */
// Long because: one flag check after another, then one of three jobs (the study data, the test conditions, a samples figure); each job is a library call.
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
      conditions: { type: "string" },
      only: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.conditions !== undefined) {
    await generateConditions(values.conditions, {
      count: parseIntFlag(values.count, "count"),
      seed: parseSeedFlag(values.seed),
      names: parseListFlag(values.only, "only"),
      force: values.force,
      samples: values.samples,
    });
    return;
  }
  if (values.only !== undefined) throw new Error("--only needs --conditions DIR");
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

/** `--conditions DIR`: writes the condition set unless an identical one is there. */
async function generateConditions(
  dir: string,
  options: {
    count?: number;
    seed?: number;
    names?: string[];
    force: boolean;
    samples?: string;
  },
): Promise<void> {
  const started = performance.now();
  const count = options.count ?? DEFAULT_CONDITION_COUNT;
  const seed = options.seed ?? DEFAULT_CONDITIONS_SEED;
  const names = options.names ?? CONDITIONS.map((c) => c.name);
  names.forEach(conditionByName); // unknown names fail before anything is written
  let present: string[] | undefined;
  try {
    const index: ConditionsIndex = JSON.parse(
      await Deno.readTextFile(join(dir, CONDITIONS_INDEX)),
    );
    if (index.count === count && index.seed === seed) {
      present = (await readConditions(dir)).map((c) => c.name);
    }
  } catch {
    // No set there (or another one): write it.
  }
  if (!options.force && present?.join() === names.join()) {
    console.log(`${dir} already holds these conditions; nothing to do (--force to redo)`);
  } else {
    await writeConditions(dir, { count, seed, names, log: (line) => console.log(line) });
  }
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (options.samples) {
    await writeFileAtomic(options.samples, await conditionSamplesPng(dir));
    console.log(`wrote ${options.samples} (first 4 composites of each condition in ${dir})`);
  }
}

if (import.meta.main) await runMain("generate", () => main(Deno.args));
