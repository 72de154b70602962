/**
 * Accuracy per test condition and SumNet's per-digit read-out against the digits the generator
 * placed (test composites only): which positions it reads right, and where the errors are, by the
 * gap between neighbouring digits' ink (overlap, touching, apart) and by the digits' ink height.
 *
 * Everything here reports; nothing trains or tunes on the conditions.
 *
 * @module
 */

import { join } from "node:path";
import type * as tf from "@tensorflow/tfjs";
import { NUM_DIGITS } from "../constants.ts";
import {
  CONDITION_FILES,
  type ConditionOnDisk,
  digitGeometry,
  REFERENCE,
} from "../data/conditions.ts";
import { loadNpyPairLoader } from "../data/loader.ts";
import type { Task } from "../models/registry.ts";
import { type Cell, markdownTable } from "../notebook/display.ts";
import { readNpy } from "../io/npy.ts";
import { describeValue, isCount, isObject, readJsonFile } from "../io/json.ts";
import { explainBatch } from "../models/sumnet/core.ts";
import { firstImages } from "../data/batch.ts";
import { evaluateAccuracy } from "../training/train.ts";

/** z of a two-sided 95% interval. */
const Z95 = 1.959964;

/** A count of right answers out of a total. */
export interface Tally {
  correct: number;
  total: number;
}

/**
 * The Wilson score interval of a proportion, in percent: good also near 0% and 100%, where the
 * normal approximation's interval leaves [0, 100].
 *
 * @param tally right answers and total
 * @param z the normal quantile (default 95%)
 * @returns `[low, high]` in percent; `[0, 100]` when the total is 0
 */
export function wilsonInterval(tally: Tally, z: number = Z95): [number, number] {
  const { correct, total } = tally;
  if (total === 0) return [0, 100];
  const p = correct / total;
  const z2 = z * z;
  const centre = (p + z2 / (2 * total)) / (1 + z2 / total);
  const half = (z / (1 + z2 / total)) * Math.sqrt((p * (1 - p)) / total + z2 / (4 * total * total));
  return [100 * Math.max(0, centre - half), 100 * Math.min(1, centre + half)];
}

/** Percent right of a tally (0 when empty). */
export function percent(tally: Tally): number {
  return tally.total === 0 ? 0 : (100 * tally.correct) / tally.total;
}

/** A bucket of a measured quantity: values up to `max` (inclusive) after the previous bucket's. */
export interface Bucket {
  label: string;
  max: number;
}

/**
 * Gap buckets: columns between a digit's ink and its nearest neighbour's (negative: the inks
 * share columns).
 */
export const GAP_BUCKETS: readonly Bucket[] = Object.freeze([
  { label: "overlap (< 0 px)", max: -1 },
  { label: "touching (0 px)", max: 0 },
  { label: "close (1-3 px)", max: 3 },
  { label: "apart (4-9 px)", max: 9 },
  { label: "far (10+ px)", max: Infinity },
]);

/** Ink height buckets (the course's digits: 15-31 px, median 21 px). */
export const HEIGHT_BUCKETS: readonly Bucket[] = Object.freeze([
  { label: "< 15 px", max: 14 },
  { label: "15-18 px", max: 18 },
  { label: "19-23 px", max: 23 },
  { label: "24-27 px", max: 27 },
  { label: "28-31 px", max: 31 },
  { label: "32+ px", max: Infinity },
]);

/** Index of the bucket holding `value`. */
export function bucketOf(buckets: readonly Bucket[], value: number): number {
  const i = buckets.findIndex((b) => value <= b.max);
  return i < 0 ? buckets.length - 1 : i;
}

/** Read-out accuracy of one condition (or pooled over several). */
export interface ReadoutResult {
  /** Composites. */
  composites: number;
  /** Digits right at each position, left to right. */
  positions: Tally[];
  /** All digits. */
  digits: Tally;
  /** Composites with all four digits right. */
  allFour: Tally;
  /** Composites whose sum is right although a digit is read wrong (errors that cancel). */
  sumRightDigitsWrong: number;
  /** Per {@linkcode GAP_BUCKETS}: digits by their nearest gap, composites (sums) by their smallest. */
  byGap: { digits: Tally; sums: Tally }[];
  /** Per {@linkcode HEIGHT_BUCKETS}: digits by their ink height, composites by their mean. */
  byHeight: { digits: Tally; sums: Tally }[];
}

function emptyTallies(n: number): { digits: Tally; sums: Tally }[] {
  return Array.from({ length: n }, () => ({
    digits: { correct: 0, total: 0 },
    sums: { correct: 0, total: 0 },
  }));
}

/** An empty result, to pool into. */
export function emptyReadout(): ReadoutResult {
  return {
    composites: 0,
    positions: Array.from({ length: NUM_DIGITS }, () => ({ correct: 0, total: 0 })),
    digits: { correct: 0, total: 0 },
    allFour: { correct: 0, total: 0 },
    sumRightDigitsWrong: 0,
    byGap: emptyTallies(GAP_BUCKETS.length),
    byHeight: emptyTallies(HEIGHT_BUCKETS.length),
  };
}

function add(into: Tally, from: Tally): void {
  into.correct += from.correct;
  into.total += from.total;
}

/** Adds `from` into `into` (pooling conditions). */
export function poolReadout(into: ReadoutResult, from: ReadoutResult): void {
  into.composites += from.composites;
  into.positions.forEach((t, k) => add(t, from.positions[k]));
  add(into.digits, from.digits);
  add(into.allFour, from.allFour);
  into.sumRightDigitsWrong += from.sumRightDigitsWrong;
  for (const key of ["byGap", "byHeight"] as const) {
    into[key].forEach((t, i) => {
      add(t.digits, from[key][i].digits);
      add(t.sums, from[key][i].sums);
    });
  }
}

/** What {@linkcode tallyReadout} compares. */
export interface ReadoutInput {
  /** Per composite, the digits read left to right (SumNet's explanation; four, or none). */
  read: readonly (readonly number[])[];
  /** Per composite, the predicted sum. */
  predicted: ArrayLike<number>;
  /** Per composite, the true sum. */
  labels: ArrayLike<number>;
  /** `[count, 4]` the placed digits (generator order). */
  digits: ArrayLike<number>;
  /** `[count, 4, 4]` their ink boxes. */
  ink: ArrayLike<number>;
}

/**
 * Compares read digits with the placed ones, position by position (positions are the digits'
 * left-to-right order by ink centre), and buckets digits and sums by gap and ink height.
 * A composite read with fewer or more than four digits counts all its digits wrong.
 *
 * @param input reads, predictions, truth and geometry of `count` composites
 * @returns the tallies
 */
export function tallyReadout(input: ReadoutInput): ReadoutResult {
  const count = input.read.length;
  for (
    const [name, length] of [
      ["predicted", input.predicted.length],
      ["labels", input.labels.length],
      ["digits", input.digits.length / NUM_DIGITS],
      ["ink", input.ink.length / (NUM_DIGITS * 4)],
    ] as const
  ) {
    if (length !== count) {
      throw new RangeError(`tallyReadout: ${count} reads but ${length} ${name}`);
    }
  }
  const result = emptyReadout();
  result.composites = count;
  for (let n = 0; n < count; n++) {
    const geometry = digitGeometry(input.ink, n);
    const read = input.read[n].length === NUM_DIGITS ? input.read[n] : undefined;
    const sumRight = input.predicted[n] === input.labels[n];
    let right = 0;
    geometry.order.forEach((k, position) => {
      const ok = read !== undefined && read[position] === input.digits[n * NUM_DIGITS + k];
      const tally = { correct: ok ? 1 : 0, total: 1 };
      if (ok) right++;
      add(result.positions[position], tally);
      add(result.digits, tally);
      add(result.byGap[bucketOf(GAP_BUCKETS, geometry.gaps[position])].digits, tally);
      add(result.byHeight[bucketOf(HEIGHT_BUCKETS, geometry.heights[position])].digits, tally);
    });
    const sum = { correct: sumRight ? 1 : 0, total: 1 };
    add(result.allFour, { correct: right === NUM_DIGITS ? 1 : 0, total: 1 });
    if (sumRight && right < NUM_DIGITS) result.sumRightDigitsWrong++;
    add(result.byGap[bucketOf(GAP_BUCKETS, geometry.minGap)].sums, sum);
    add(result.byHeight[bucketOf(HEIGHT_BUCKETS, Math.round(geometry.meanHeight))].sums, sum);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Evaluating a model on a condition set.

/** One condition's results. */
export interface ConditionResult {
  name: string;
  description: string;
  readable: boolean;
  readabilityNote?: string;
  /** The condition's fingerprint (from its manifest). */
  fingerprint: string;
  /** Exact sums. */
  sums: Tally;
  /** Percent of exact sums. */
  accuracy: number;
  /** 95% Wilson interval of the accuracy, in percent. */
  interval: [number, number];
  /** Whether the condition has image effects (its geometry is then the reference's). */
  effects: boolean;
  /** SumNet's read-out against the placed digits (SumNet checkpoints only). */
  readout?: ReadoutResult;
}

/** Options of {@linkcode evaluateConditions}. */
export interface EvaluateConditionsOptions {
  /** The checkpoint's task. */
  task: Task;
  /** Images per forward pass (default 64). */
  batchSize?: number;
  /** Read the digits too (needs a SumNet: its `cell_logits` layer). */
  readout?: boolean;
  /** Only the first images of each condition (whole batches; for tests). */
  limit?: number;
  /** A line per condition when done. */
  log?: (line: string) => void;
}

/**
 * Scores a model on every condition of a set with the one evaluation loop
 * (`evaluateAccuracy`), and with `readout` compares SumNet's digits with the placed ones (the
 * same forward pass predicts the sum and reads the digits).
 *
 * @param model a loaded checkpoint's model
 * @param conditions the set, from `readConditions`
 * @param options task, batch size, read-out, limit, log
 * @returns one result per condition, in order
 */
export async function evaluateConditions(
  model: tf.LayersModel,
  conditions: readonly ConditionOnDisk[],
  options: EvaluateConditionsOptions,
): Promise<ConditionResult[]> {
  const results: ConditionResult[] = [];
  for (const condition of conditions) {
    const started = performance.now();
    const loader = await loadNpyPairLoader(
      join(condition.dir, CONDITION_FILES.images),
      join(condition.dir, CONDITION_FILES.labels),
      options.batchSize,
    );
    const reads: number[][] = [];
    let result;
    try {
      const source = options.limit === undefined ? loader : firstImages(loader, options.limit);
      result = await evaluateAccuracy(model, source, options.task, {
        predict: options.readout
          ? async (x) => {
            const explanations = await explainBatch(model, x);
            for (const e of explanations) reads.push(e.digits.map((d) => d.digit));
            return Int32Array.from(explanations, (e) => e.sum);
          }
          : undefined,
      });
    } finally {
      loader.close();
    }
    const record = condition.manifest.condition;
    const sums = { correct: result.correct, total: result.total };
    const entry: ConditionResult = {
      name: condition.name,
      description: record.description,
      readable: record.readable,
      readabilityNote: record.readabilityNote,
      fingerprint: record.fingerprint,
      sums,
      accuracy: percent(sums),
      interval: wilsonInterval(sums),
      effects: Object.keys(record.effects).length > 0,
    };
    if (options.readout) {
      const count = result.total;
      const digits = (await readNpy(join(condition.dir, CONDITION_FILES.digits))).data;
      const ink = (await readNpy(join(condition.dir, CONDITION_FILES.ink))).data;
      entry.readout = tallyReadout({
        read: reads,
        predicted: result.predictions,
        labels: result.labels,
        digits: (digits as Uint8Array).subarray(0, count * NUM_DIGITS),
        ink: (ink as Uint8Array).subarray(0, count * NUM_DIGITS * 4),
      });
    }
    results.push(entry);
    options.log?.(
      `${condition.name}: ${sums.correct}/${sums.total} = ${entry.accuracy.toFixed(2)}%` +
        (entry.readout ? `, digits ${percent(entry.readout.digits).toFixed(2)}%` : "") +
        ` (${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
  }
  return results;
}

/** The results of a model on a condition set, as written to JSON. */
export interface ConditionsReport {
  /** Checkpoint folder and its kind. */
  model: string;
  kind: string;
  /** Backend the numbers were computed on. */
  backend: string;
  /** The set's folder, seed and composites per condition. */
  conditionsDir: string;
  seed: number;
  count: number;
  /** The command that made the report. */
  command: string;
  conditions: ConditionResult[];
  /** Read-outs pooled over the conditions without image effects (layout only), and over all. */
  pooled?: { layout: ReadoutResult; all: ReadoutResult };
}

/**
 * Reads a report that `deno task evaluate --conditions` wrote (`<out>.json`), checking what the
 * notebooks and comparisons use: the model, and per condition its name, readability, exact sums
 * and accuracy.
 *
 * @throws Error `Cannot read <path>: ...` naming what is missing or wrong
 */
export async function readConditionsReport(path: string): Promise<ConditionsReport> {
  const value = await readJsonFile<unknown>(path);
  const fail = (what: string): never => {
    throw new Error(`Cannot read ${path}: ${what}`);
  };
  if (value === undefined) fail("no such file (make it with `deno task evaluate --conditions`)");
  if (!isObject(value)) return fail("not a JSON object");
  if (typeof value.model !== "string") fail(`'model' is ${describeValue(value.model)}`);
  if (!Array.isArray(value.conditions) || value.conditions.length === 0) {
    fail(`'conditions' is ${describeValue(value.conditions)}, not a list of conditions`);
  }
  (value.conditions as unknown[]).forEach((c, i) => {
    const sums = isObject(c) && isObject(c.sums) ? c.sums : undefined;
    if (
      !isObject(c) || typeof c.name !== "string" || typeof c.readable !== "boolean" ||
      !sums || !isCount(sums.correct) || !isCount(sums.total) || sums.correct > sums.total ||
      typeof c.accuracy !== "number" || !Number.isFinite(c.accuracy)
    ) {
      fail(`condition ${i} is ${describeValue(c)}, not a name, readable, sums and accuracy`);
    }
  });
  return value as unknown as ConditionsReport;
}

/** Read-outs pooled over the layout-only conditions and over all of them. */
export function poolConditions(
  results: readonly ConditionResult[],
): { layout: ReadoutResult; all: ReadoutResult } | undefined {
  if (!results.every((r) => r.readout)) return undefined;
  const layout = emptyReadout();
  const all = emptyReadout();
  for (const r of results) {
    poolReadout(all, r.readout!);
    if (!r.effects) poolReadout(layout, r.readout!);
  }
  return { layout, all };
}

function pct(tally: Tally): string {
  return tally.total === 0 ? "-" : `${percent(tally).toFixed(2)}%`;
}

/** A Markdown report: sums per condition, the read-out per position, errors by gap and height. */
// Long because: the report in the order it reads (sums per condition, read-out by position, by gap, by ink height), one table after another.
export function conditionsMarkdown(report: ConditionsReport): string {
  const reference = report.conditions.find((c) => c.name === REFERENCE);
  const sumRows: Cell[][] = report.conditions.map((c) => [
    c.name,
    c.readable ? "yes" : "no",
    `${c.sums.correct} / ${c.sums.total}`,
    `${c.accuracy.toFixed(2)}%`,
    `${c.interval[0].toFixed(2)}-${c.interval[1].toFixed(2)}%`,
    reference && c !== reference
      ? `${c.accuracy - reference.accuracy >= 0 ? "+" : ""}${
        (c.accuracy - reference.accuracy).toFixed(2)
      }`
      : "",
    c.description,
  ]);
  const parts = [
    `Model \`${report.model}\` (${report.kind}) on \`${report.conditionsDir}\` (seed ${report.seed}, ` +
    `${report.count} composites per condition, MNIST test digits), backend ${report.backend}. ` +
    `Made by \`${report.command}\`. The conditions are for reporting only: no model is ` +
    `trained or tuned on them.`,
    "",
    markdownTable(
      [
        "condition",
        "readable",
        "sums right",
        "accuracy",
        "95% interval",
        "vs reference (points)",
        "drawn",
      ],
      sumRows,
    ),
  ];
  const withReadout = report.conditions.filter((c) => c.readout);
  if (withReadout.length > 0) {
    parts.push(
      "",
      "Per-digit read-out (the four digits SumNet reads, left to right, against the placed ones):",
      "",
      markdownTable(
        [
          "condition",
          "digit 1",
          "digit 2",
          "digit 3",
          "digit 4",
          "all digits",
          "all four right",
          "sum right, a digit wrong",
        ],
        withReadout.map((c) => {
          const r = c.readout!;
          return [
            c.name,
            ...r.positions.map(pct),
            pct(r.digits),
            pct(r.allFour),
            String(r.sumRightDigitsWrong),
          ];
        }),
      ),
    );
  }
  const bucketTable = (title: string, buckets: readonly Bucket[], key: "byGap" | "byHeight") => {
    // Conditions in which the quantity varies: at least two buckets with 5% of the digits each.
    const varying = withReadout.filter((c) =>
      !c.effects &&
      c.readout![key].filter((b) => b.digits.total >= 0.05 * c.readout!.digits.total).length >= 2
    );
    if (varying.length === 0) return [];
    return [
      "",
      markdownTable(
        [title, ...varying.map((c) => c.name)],
        buckets.map((b, i) => [
          b.label,
          ...varying.map((c) => {
            const t = c.readout![key][i].digits;
            return t.total === 0 ? "-" : `${pct(t)} of ${t.total}`;
          }),
        ]),
      ),
    ];
  };
  if (withReadout.length > 0) {
    parts.push(
      "",
      "Where the errors are: digits right by the columns between their ink and their nearest " +
        "neighbour's (negative: shared columns), and by their ink height, in the conditions " +
        "without image effects where these vary (at least two buckets hold 5% of the digits " +
        "each). Each condition on its own: pooling conditions would mix their other differences " +
        "in (all buckets, also for sums, are in the JSON).",
      ...bucketTable("nearest ink gap", GAP_BUCKETS, "byGap"),
      ...bucketTable("ink height", HEIGHT_BUCKETS, "byHeight"),
    );
  }
  if (report.pooled) {
    const { all } = report.pooled;
    parts.push(
      "",
      `Pooled over all ${report.conditions.length} conditions: ${pct(all.digits)} of ` +
        `${all.digits.total} digits read right, ${pct(all.allFour)} of ${all.allFour.total} ` +
        `composites with all four right.`,
    );
  }
  return parts.join("\n") + "\n";
}
