/**
 * Which MNIST training digits make up digitsum's own course files, and which of them sit in a
 * run's validation composites. The generator is deterministic, so its picks can be drawn again
 * from the folder's MANIFEST.json (seed, layout, counts); each file's redrawn sums are checked
 * against the file before they are trusted.
 *
 * SumNet's stage 1 pastes MNIST's training digits into strips, and the course composites, the
 * validation ones included, are made of those same digits (about 78% of a validation split's
 * digits also sit in a training composite). {@linkcode validationDigits} and
 * {@linkcode withoutDigits} keep a split's validation digits out of stage 1, so that validation
 * measures how well new handwriting is read (docs/BEYOND.md).
 *
 * @module
 */
import { join } from "node:path";
import { TRAIN_FRACTION } from "../constants.ts";
import { readNpy } from "../io/npy.ts";
import {
  COURSE_IMAGE_FILES,
  COURSE_LABEL_FILES,
  type DigitSource,
  fileSeed,
  generateComposites,
  GENERATOR_VERSION,
  MANIFEST_FILE,
  readManifest,
} from "./generate.ts";
import { DEFAULT_SPLIT_SEED, splitIndices } from "./loader.ts";

/** Digits per composite. */
const DIGITS_PER_IMAGE = 4;

/**
 * The MNIST training digits of every course composite in `dataDir`, in the order the loaders
 * read them (`data0.npy`, `data1.npy`, `data2.npy`): `[N, 4]` indices into `source`, left to
 * right. The generator's picks are drawn again from the folder's manifest and each file's sums
 * are checked against its `lab*.npy`.
 *
 * @param dataDir a folder written by digitsum's generator (`deno task generate`)
 * @param source MNIST's training digits, the generator's source (`loadMnist("train")`)
 * @throws Error `Cannot tell which digits make up data/data1.npy: ...` when the folder has no
 *   manifest, another generator's or source's files, or sums the redrawn picks do not give
 */
export async function courseDigitSources(
  dataDir: string,
  source: DigitSource,
): Promise<Int32Array> {
  const manifestPath = join(dataDir, MANIFEST_FILE);
  const manifest = await readManifest(manifestPath);
  const cannot = (file: string, why: string) =>
    new Error(`Cannot tell which digits make up ${join(dataDir, file)}: ${why}`);
  if (manifest === undefined) {
    throw cannot(
      COURSE_IMAGE_FILES[0],
      `no ${manifestPath} (only files written by digitsum's generator record their digits)`,
    );
  }
  if (manifest.generator !== GENERATOR_VERSION) {
    throw cannot(
      COURSE_IMAGE_FILES[0],
      `${manifestPath} is from generator '${manifest.generator}', not '${GENERATOR_VERSION}'`,
    );
  }
  const parts: Int32Array[] = [];
  for (const [i, imagesFile] of COURSE_IMAGE_FILES.entries()) {
    const labelsFile = COURSE_LABEL_FILES[i];
    const entry = manifest.files[imagesFile];
    const labelEntry = manifest.files[labelsFile];
    if (entry?.status !== "done" || labelEntry?.status !== "done") {
      throw cannot(imagesFile, `${manifestPath} does not record it and ${labelsFile} as written`);
    }
    if (source.name !== undefined && entry.source !== source.name) {
      throw cannot(imagesFile, `it was drawn from ${entry.source}, not ${source.name}`);
    }
    const count = entry.shape[0];
    const made = generateComposites(source, {
      count,
      seed: fileSeed(entry.seed, imagesFile),
      layout: manifest.layout,
    });
    const labels = await readNpy(join(dataDir, labelsFile));
    const sums = labels.data;
    if (labels.shape.length !== 1 || labels.shape[0] !== count) {
      throw cannot(
        imagesFile,
        `${labelsFile} holds shape [${labels.shape}], its manifest says [${count}]`,
      );
    }
    for (let n = 0; n < count; n++) {
      if (Number(sums[n]) !== made.labels[n]) {
        throw cannot(
          imagesFile,
          `${labelsFile} gives sum ${sums[n]} for image ${n}, the generator's redrawn digits ` +
            `${made.labels[n]} (the files were changed after they were written)`,
        );
      }
    }
    parts.push(made.sources);
  }
  const out = new Int32Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Options of {@linkcode validationDigits}. */
export interface ValidationDigitsOptions {
  /** The split's seed, as `getLoaders` takes it (a run's seed; default 42). */
  seed?: number;
  /** Fraction of the composites in the training split (default 0.8). */
  trainFraction?: number;
}

/**
 * The MNIST training digits that appear in a split's validation composites: the split of
 * `getLoaders(trainFraction, _, { seed })`, the digits of {@linkcode courseDigitSources}.
 *
 * @param dataDir a folder written by digitsum's generator
 * @param source MNIST's training digits
 * @param options the split's `seed` and `trainFraction`
 * @returns the digits' indices in `source`, ascending, each once
 */
export async function validationDigits(
  dataDir: string,
  source: DigitSource,
  options: ValidationDigitsOptions = {},
): Promise<Int32Array> {
  const sources = await courseDigitSources(dataDir, source);
  const { val } = splitIndices(
    sources.length / DIGITS_PER_IMAGE,
    options.trainFraction ?? TRAIN_FRACTION,
    options.seed ?? DEFAULT_SPLIT_SEED,
  );
  const seen = new Uint8Array(source.count);
  for (const image of val) {
    for (let k = 0; k < DIGITS_PER_IMAGE; k++) seen[sources[image * DIGITS_PER_IMAGE + k]] = 1;
  }
  const out: number[] = [];
  for (let i = 0; i < seen.length; i++) if (seen[i]) out.push(i);
  return Int32Array.from(out);
}

/**
 * `source` without the digits at `indices` (the rest in their order).
 *
 * @throws RangeError when an index is outside `source`
 */
export function withoutDigits(source: DigitSource, indices: ArrayLike<number>): DigitSource {
  const drop = new Uint8Array(source.count);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    if (!(Number.isInteger(index) && index >= 0 && index < source.count)) {
      throw new RangeError(
        `withoutDigits: index ${index} is outside ${source.name ?? "the source"} ` +
          `(${source.count} digits)`,
      );
    }
    drop[index] = 1;
  }
  const keep = source.count - drop.reduce((total, d) => total + d, 0);
  const side = source.images.length / Math.max(1, source.count);
  const images = new Uint8Array(keep * side);
  const labels = new Uint8Array(keep);
  let at = 0;
  for (let i = 0; i < source.count; i++) {
    if (drop[i]) continue;
    images.set(source.images.subarray(i * side, (i + 1) * side), at * side);
    labels[at++] = source.labels[i];
  }
  return {
    images,
    labels,
    count: keep,
    name: `${source.name ?? "digits"} without ${source.count - keep}`,
  };
}
