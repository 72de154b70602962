/**
 * Test conditions: composites of MNIST *test* digits drawn differently from the course's images
 * (smaller and larger digits, narrow and wide ones, wider and tighter gaps, touching and
 * overlapping neighbours, more vertical jitter, thinner and thicker strokes, blur, faint ink,
 * noise), to measure how a model's accuracy depends on how composites are drawn.
 *
 * Every condition holds the same digits (one draw of `[count, 4]` MNIST test digits, shared), so
 * conditions differ only in how the digits are drawn; conditions with the default layout (image
 * effects only) are the reference condition's composites with the effects applied. The layout comes from the generator
 * (`generateComposites` with the condition's layout), then the condition's image effects are
 * applied to the whole composite. Each condition writes `<dir>/<name>/test_data.npy` and
 * `test_lab.npy` (course format), `test_digits.npy` (`[n, 4]` uint8, the digits left to right),
 * `test_ink.npy` (`[n, 4, 4]` uint8, each digit's ink box as placed: left, top, right, bottom,
 * exclusive, before effects) and `MANIFEST.json` (the generator's manifest format, plus the
 * condition's parameters and fingerprint); `<dir>/CONDITIONS.json` lists them.
 *
 * The conditions are for reporting only: no model is ever trained or tuned on them.
 *
 * @module
 */

import { join } from "node:path";
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_DIGITS } from "../constants.ts";
import { ensureDir, writeFileAtomic, writeJsonAtomic } from "../io/fsutil.ts";
import {
  type CompositeLayout,
  type Composites,
  DEFAULT_LAYOUT,
  type DigitPicks,
  type DigitSource,
  drawDigitPicks,
  fileSeed,
  generateComposites,
  GENERATOR_VERSION,
  loadMnist,
  type Manifest,
  MANIFEST_FILE,
  readManifest,
  sha256Hex,
  TEST_FILES,
} from "./generate.ts";
import { type GridImage, imageGrid, svgToPng } from "../results/charts.ts";
import { encodeNpy, openNpy, readNpy } from "../io/npy.ts";
import { applyEffects, type ConditionEffects } from "./effects.ts";

export { applyEffects, type ConditionEffects } from "./effects.ts";

/** Composites per condition by default. */
export const DEFAULT_CONDITION_COUNT = 2_000;
/** Seed of the condition set by default (the issue that asked for it). */
export const DEFAULT_CONDITIONS_SEED = 16;
/** Default folder of the condition set. */
export const DEFAULT_CONDITIONS_DIR = "data/conditions";
/** The index of a condition set. */
export const CONDITIONS_INDEX = "CONDITIONS.json";
/** Per-condition files besides the course-format pair. */
export const CONDITION_FILES = {
  ...TEST_FILES,
  /** `[n, 4]` uint8: each composite's digits, left to right. */
  digits: "test_digits.npy",
  /** `[n, 4, 4]` uint8: each digit's ink box (left, top, right, bottom; exclusive). */
  ink: "test_ink.npy",
} as const;

/** A named way of drawing the test composites. */
export interface Condition {
  /** File-safe name, also the folder name. */
  name: string;
  /** What differs from the course's drawing. */
  description: string;
  /** Generator layout overrides (see `CompositeLayout`). */
  layout: Partial<CompositeLayout>;
  /** Image effects. */
  effects: ConditionEffects;
  /**
   * Whether a person still reads the digits, judged by eye on samples (docs/conditions_samples.png
   * and more): the 98% target applies to readable conditions only.
   */
  readable: boolean;
  /** Why a condition is not (or only partly) readable. */
  readabilityNote?: string;
}

/** The condition drawn like the test split. */
export const REFERENCE = "reference";

/** Ink gaps used where a condition changes something else than spacing: clearly apart. */
const CLEAR_GAPS = { inkGapMin: 1, inkGapMax: 16 } as const;

/**
 * The condition set. The course's digits have ink 15-31 px tall (median 21 px); the generator's
 * default boxes of 27-31 px give ink of 19-23 px (5th-95th percentile, median 21 px) and ink gaps
 * from -5 to 27 px between neighbours (median 11 px; 15% share columns).
 */
export const CONDITIONS: readonly Condition[] = Object.freeze(
  [
    {
      name: REFERENCE,
      description: "drawn like the test split (generator defaults)",
      layout: {},
      effects: {},
      readable: true,
    },
    {
      name: "scale-small",
      description: "boxes 17-21 px (ink about 12-15 px tall), gaps 1-16 px",
      layout: { boxMin: 17, boxMax: 21, ...CLEAR_GAPS },
      effects: {},
      readable: true,
    },
    {
      name: "scale-course",
      description: "boxes 21-43 px (ink about 15-31 px tall, the course's range), gaps 1-16 px",
      layout: { boxMin: 21, boxMax: 43, ...CLEAR_GAPS },
      effects: {},
      readable: true,
    },
    {
      name: "scale-large",
      description: "boxes 42-48 px (ink about 30-34 px tall), gaps 1-16 px",
      layout: { boxMin: 42, boxMax: 48, ...CLEAR_GAPS },
      effects: {},
      readable: true,
    },
    {
      name: "narrow",
      description: "boxes 65-80% as wide as tall, gaps 1-16 px",
      layout: { aspectMinPct: 65, aspectMaxPct: 80, ...CLEAR_GAPS },
      effects: {},
      readable: true,
    },
    {
      name: "wide",
      description: "boxes 125-145% as wide as tall, gaps 1-16 px",
      layout: { aspectMinPct: 125, aspectMaxPct: 145, ...CLEAR_GAPS },
      effects: {},
      readable: true,
    },
    {
      name: "gaps-wide",
      description: "18-30 px between neighbours' ink",
      layout: { inkGapMin: 18, inkGapMax: 30 },
      effects: {},
      readable: true,
    },
    {
      name: "gaps-tight",
      description: "1-3 px between neighbours' ink",
      layout: { inkGapMin: 1, inkGapMax: 3 },
      effects: {},
      readable: true,
    },
    {
      name: "touching",
      description: "neighbours' ink in adjacent columns or sharing up to 2",
      layout: { inkGapMin: -2, inkGapMax: 0 },
      effects: {},
      readable: true,
    },
    {
      name: "overlapping",
      description: "neighbours' ink sharing 3-6 columns (at most half the narrower digit's)",
      layout: { inkGapMin: -6, inkGapMax: -3 },
      effects: {},
      readable: false,
      readabilityNote: "crossing strokes make some digits ambiguous to a person too (about 1 in " +
        "5 samples looked at had a digit one could misread)",
    },
    {
      name: "jitter-vertical",
      description:
        "box tops up to 6 px past the top or bottom edge (ink may be cut by a pixel or two)",
      layout: { verticalOverhang: 6 },
      effects: {},
      readable: true,
    },
    {
      name: "stroke-thin",
      description: "strokes thinned: 1 px gray erosion, half blended in",
      layout: {},
      effects: { stroke: -1, strokeMix: 0.5 },
      readable: true,
    },
    {
      name: "stroke-thick",
      description: "strokes thickened: 1 px gray dilation",
      layout: {},
      effects: { stroke: 1 },
      readable: true,
    },
    {
      name: "blur",
      description: "Gaussian blur, sigma 1 px",
      layout: {},
      effects: { blurSigma: 1 },
      readable: true,
    },
    {
      name: "faint",
      description: "ink at 50% intensity",
      layout: {},
      effects: { contrast: 0.5 },
      readable: true,
    },
    {
      name: "noise",
      description: "Gaussian noise, sigma 32 gray levels, on every pixel",
      layout: {},
      effects: { noiseSigma: 32 },
      readable: true,
    },
  ] satisfies Condition[],
);

/**
 * The condition called `name`.
 *
 * @throws Error listing the known names when there is none
 */
export function conditionByName(name: string): Condition {
  const found = CONDITIONS.find((c) => c.name === name);
  if (!found) {
    throw new Error(
      `Unknown condition '${name}'; known: ${CONDITIONS.map((c) => c.name).join(", ")}`,
    );
  }
  return found;
}

/** Geometry of one composite's digits, in left-to-right order of their ink centres. */
export interface DigitGeometry {
  /** Generator positions (0..3) sorted by ink centre. */
  order: number[];
  /** Per sorted digit: columns to the nearest neighbour's ink (negative: shared columns). */
  gaps: number[];
  /** Per sorted digit: ink height in px. */
  heights: number[];
  /** The smallest gap between two neighbours. */
  minGap: number;
  /** Mean ink height of the four digits. */
  meanHeight: number;
}

/**
 * Geometry of composite `n` from its ink boxes.
 *
 * @param ink `[count, 4, 4]` left, top, right, bottom (exclusive) per digit
 * @param n the composite
 */
export function digitGeometry(ink: ArrayLike<number>, n: number): DigitGeometry {
  const box = (k: number) => {
    const b = (n * NUM_DIGITS + k) * 4;
    return { left: ink[b], top: ink[b + 1], right: ink[b + 2], bottom: ink[b + 3] };
  };
  const order = Array.from({ length: NUM_DIGITS }, (_, k) => k)
    .sort((a, b) => (box(a).left + box(a).right) - (box(b).left + box(b).right) || a - b);
  const boxes = order.map(box);
  const between = boxes.slice(1).map((b, i) => b.left - boxes[i].right);
  const gaps = boxes.map((_, i) =>
    Math.min(i > 0 ? between[i - 1] : Infinity, i < between.length ? between[i] : Infinity)
  );
  const heights = boxes.map((b) => b.bottom - b.top);
  return {
    order,
    gaps,
    heights,
    minGap: Math.min(...between),
    meanHeight: heights.reduce((a, h) => a + h, 0) / heights.length,
  };
}

/** Percentiles of a measured quantity. */
export interface Spread {
  p5: number;
  median: number;
  p95: number;
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p5: at(0.05), median: at(0.5), p95: at(0.95) };
}

/** The digits' geometry over a whole condition, measured from the placed ink boxes. */
export interface MeasuredGeometry {
  /** Ink height of every digit (px). */
  inkHeight: Spread;
  /** Ink width of every digit (px). */
  inkWidth: Spread;
  /** Columns between neighbours' ink (negative: shared columns). */
  inkGap: Spread;
  /** Share of neighbour pairs whose ink shares columns (gap below 0), in percent. */
  overlapPercent: number;
}

/**
 * Measures the placed digits of `count` composites from their ink boxes.
 *
 * @param ink `[count, 4, 4]` left, top, right, bottom (exclusive)
 */
export function measureGeometry(ink: ArrayLike<number>): MeasuredGeometry {
  const count = ink.length / (NUM_DIGITS * 4);
  const heights: number[] = [];
  const widths: number[] = [];
  const gaps: number[] = [];
  for (let n = 0; n < count; n++) {
    const g = digitGeometry(ink, n);
    heights.push(...g.heights);
    const boxes = g.order.map((k) => (n * NUM_DIGITS + k) * 4);
    for (const b of boxes) widths.push(ink[b + 2] - ink[b]);
    for (let i = 1; i < boxes.length; i++) gaps.push(ink[boxes[i]] - ink[boxes[i - 1] + 2]);
  }
  return {
    inkHeight: spread(heights),
    inkWidth: spread(widths),
    inkGap: spread(gaps),
    overlapPercent: (100 * gaps.filter((g) => g < 0).length) / Math.max(1, gaps.length),
  };
}

// ---------------------------------------------------------------------------------------------
// Generating and writing a condition set.

/** Options of {@linkcode generateCondition}. */
export interface GenerateConditionOptions {
  /** Composites (default {@linkcode DEFAULT_CONDITION_COUNT}). */
  count?: number;
  /** Set seed (default {@linkcode DEFAULT_CONDITIONS_SEED}). */
  seed?: number;
  /** The digits to draw (default: `drawDigitPicks(source, { count, seed })`). */
  picks?: DigitPicks;
}

/**
 * The composites of one condition: the set's digits drawn with the condition's layout, then its
 * effects. Deterministic for a source, condition, count and seed.
 *
 * @param source MNIST's test digits
 * @param condition what to draw
 * @param options count, seed, shared picks
 * @returns the composites (`ink` describes the digits as placed, before effects)
 */
export function generateCondition(
  source: DigitSource,
  condition: Condition,
  options: GenerateConditionOptions = {},
): Composites {
  const count = options.count ?? DEFAULT_CONDITION_COUNT;
  const seed = options.seed ?? DEFAULT_CONDITIONS_SEED;
  const picks = options.picks ?? drawDigitPicks(source, { count, seed });
  // Conditions that keep the default layout are the reference's composites with effects on top,
  // so that they differ from it by the effects alone.
  const layoutStream = Object.keys(condition.layout).length === 0 ? REFERENCE : condition.name;
  const made = generateComposites(source, {
    count,
    seed: fileSeed(seed, layoutStream),
    layout: condition.layout,
    picks,
  });
  applyEffects(made.images, condition.effects, fileSeed(seed, condition.name));
  return made;
}

/** What a condition's MANIFEST.json records beyond the generator's manifest. */
export interface ConditionRecord {
  name: string;
  description: string;
  readable: boolean;
  readabilityNote?: string;
  /** The complete layout. */
  layout: CompositeLayout;
  effects: ConditionEffects;
  /** The placed digits' geometry, measured (before effects). */
  measured: MeasuredGeometry;
  count: number;
  /** Set seed (the condition's own streams derive from it and its name). */
  seed: number;
  /** Digit source, always `mnist-test`. */
  source: string;
  /** sha256 over the sorted `name:sha256` lines of the condition's files. */
  fingerprint: string;
}

/** A condition folder's MANIFEST.json. */
export interface ConditionManifest extends Manifest {
  condition: ConditionRecord;
}

/** CONDITIONS.json: the set's conditions in order. */
export interface ConditionsIndex {
  generator: string;
  seed: number;
  count: number;
  conditions: {
    name: string;
    description: string;
    readable: boolean;
    readabilityNote?: string;
    fingerprint: string;
  }[];
}

/** Options of {@linkcode writeConditions}. */
export interface WriteConditionsOptions extends GenerateConditionOptions {
  /** Which conditions (default all of {@linkcode CONDITIONS}). */
  names?: readonly string[];
  /** MNIST's test digits (default loaded with `loadMnist("test")`). */
  source?: DigitSource;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** sha256 over sorted `name:sha256` lines. */
async function fingerprintOf(files: Record<string, { sha256?: string }>): Promise<string> {
  const lines = Object.entries(files).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, entry]) => `${name}:${entry.sha256}\n`).join("");
  return await sha256Hex(new TextEncoder().encode(lines));
}

/**
 * Generates and writes a condition set into `dir` (one folder per condition, each file written
 * atomically, MANIFEST.json last), and CONDITIONS.json listing them.
 *
 * @param dir the set's folder (created when missing)
 * @param options which conditions, count, seed, source, log
 * @returns the index as written
 */
// Long because: the set written in protocol order (pick digits once, each condition drawn, measured, written atomically, then the index), so a kill leaves a consistent folder.
export async function writeConditions(
  dir: string,
  options: WriteConditionsOptions = {},
): Promise<ConditionsIndex> {
  const count = options.count ?? DEFAULT_CONDITION_COUNT;
  const seed = options.seed ?? DEFAULT_CONDITIONS_SEED;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`writeConditions: count must be a positive integer, got ${count}`);
  }
  const conditions = (options.names ?? CONDITIONS.map((c) => c.name)).map(conditionByName);
  const log = options.log ?? (() => {});
  const source = options.source ?? await loadMnist("test");
  if (source.name !== undefined && source.name !== "mnist-test") {
    throw new Error(`writeConditions: conditions are drawn from mnist-test, got ${source.name}`);
  }
  const picks = options.picks ?? drawDigitPicks(source, { count, seed });
  await ensureDir(dir);
  const index: ConditionsIndex = { generator: GENERATOR_VERSION, seed, count, conditions: [] };
  for (const condition of conditions) {
    const started = performance.now();
    const made = generateCondition(source, condition, { count, seed, picks });
    const folder = join(dir, condition.name);
    await ensureDir(folder);
    const ink = Uint8Array.from(made.ink); // all within 0..168
    const outputs: [string, Uint8Array, number[]][] = [
      [CONDITION_FILES.images, made.images, [count, IMAGE_HEIGHT, IMAGE_WIDTH]],
      [CONDITION_FILES.labels, made.labels, [count]],
      [CONDITION_FILES.digits, made.digits, [count, NUM_DIGITS]],
      [CONDITION_FILES.ink, ink, [count, NUM_DIGITS, 4]],
    ];
    const files: Manifest["files"] = {};
    for (const [file, data, shape] of outputs) {
      const bytes = encodeNpy({ dtype: "uint8", shape, data });
      await writeFileAtomic(join(folder, file), bytes);
      files[file] = {
        status: "done",
        dtype: "uint8",
        shape,
        source: source.name ?? "mnist-test",
        seed,
        sha256: await sha256Hex(bytes),
        bytes: bytes.length,
      };
    }
    const fingerprint = await fingerprintOf(files);
    const manifest: ConditionManifest = {
      generator: GENERATOR_VERSION,
      layout: { ...DEFAULT_LAYOUT, ...condition.layout },
      files,
      condition: {
        name: condition.name,
        description: condition.description,
        readable: condition.readable,
        readabilityNote: condition.readabilityNote,
        layout: { ...DEFAULT_LAYOUT, ...condition.layout },
        effects: condition.effects,
        measured: measureGeometry(made.ink),
        count,
        seed,
        source: source.name ?? "mnist-test",
        fingerprint,
      },
    };
    await writeJsonAtomic(join(folder, MANIFEST_FILE), manifest);
    index.conditions.push({
      name: condition.name,
      description: condition.description,
      readable: condition.readable,
      readabilityNote: condition.readabilityNote,
      fingerprint,
    });
    const m = manifest.condition.measured;
    log(
      `wrote ${folder}/: ${count} composites (${condition.description}) in ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s, fingerprint ${fingerprint.slice(0, 12)}; ink height ${m.inkHeight.median} px ` +
        `(${m.inkHeight.p5}-${m.inkHeight.p95}), width ${m.inkWidth.median} px, gap ` +
        `${m.inkGap.median} px (${m.inkGap.p5}..${m.inkGap.p95}), ${
          m.overlapPercent.toFixed(1)
        }% of neighbours share columns`,
    );
  }
  await writeJsonAtomic(join(dir, CONDITIONS_INDEX), index);
  return index;
}

/** One condition of a set on disk. */
export interface ConditionOnDisk {
  name: string;
  /** Its folder. */
  dir: string;
  manifest: ConditionManifest;
}

/**
 * The conditions of a set written by {@linkcode writeConditions}, in the index's order.
 *
 * @param dir the set's folder
 * @throws Error naming the file when the index or a condition's manifest is missing or malformed
 */
export async function readConditions(dir: string): Promise<ConditionOnDisk[]> {
  const indexPath = join(dir, CONDITIONS_INDEX);
  let index: ConditionsIndex;
  try {
    index = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (error) {
    throw new Error(
      `Cannot read ${indexPath}: ${(error as Error).message} (make the set with ` +
        `\`deno task generate --conditions ${dir}\`)`,
    );
  }
  if (!Array.isArray(index?.conditions) || index.conditions.length === 0) {
    throw new Error(`Cannot read ${indexPath}: it lists no conditions`);
  }
  const out: ConditionOnDisk[] = [];
  for (const entry of index.conditions) {
    const folder = join(dir, String(entry?.name));
    const manifest = await readManifest(join(folder, MANIFEST_FILE)) as
      | ConditionManifest
      | undefined;
    if (!manifest?.condition || manifest.condition.fingerprint !== entry.fingerprint) {
      throw new Error(
        `Cannot use ${join(folder, MANIFEST_FILE)}: ${
          manifest ? "its fingerprint differs from " + indexPath : "no such file"
        }`,
      );
    }
    out.push({ name: entry.name, dir: folder, manifest });
  }
  return out;
}

/** Options of {@linkcode conditionSamplesPng}. */
export interface ConditionSamplesOptions {
  /** Composites shown per condition, the first ones of each (default 4). */
  perCondition?: number;
  /** Pixel magnification (default 2). */
  scale?: number;
}

/**
 * A PNG figure with the first composites of every condition of a set on disk, one row per
 * condition, each captioned with its condition, sum and whether a person reads it.
 *
 * @param dir the set's folder
 * @param options samples per condition, magnification
 * @returns PNG bytes
 */
export async function conditionSamplesPng(
  dir: string,
  options: ConditionSamplesOptions = {},
): Promise<Uint8Array> {
  const perCondition = options.perCondition ?? 4;
  const tiles: GridImage[] = [];
  for (const condition of await readConditions(dir)) {
    const file = await openNpy(join(condition.dir, CONDITION_FILES.images));
    const labels = await readNpy(join(condition.dir, CONDITION_FILES.labels));
    try {
      const count = Math.min(perCondition, file.shape[0]);
      const images = file.readRows(0, count) as Uint8Array;
      for (let i = 0; i < count; i++) {
        tiles.push({
          pixels: images.slice(i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE),
          width: IMAGE_WIDTH,
          height: IMAGE_HEIGHT,
          caption: `${condition.name}: ${labels.data[i]}${
            condition.manifest.condition.readable ? "" : " (not always readable)"
          }`,
        });
      }
    } finally {
      file.close();
    }
  }
  const svg = await imageGrid(tiles, {
    columns: perCondition,
    scale: options.scale ?? 2,
    title: "Test conditions (MNIST test digits; caption: condition and sum)",
  });
  return await svgToPng(svg);
}
