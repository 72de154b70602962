/**
 * Whether digitsum reproduces the study, model by model: its accuracies across seeds beside the
 * study's published ones, one sentence each, and the PyTorch cross-check as the reason when they
 * differ. Used by the README block and by study.ipynb, so both say the same thing.
 *
 * @module
 */
import { modelInfo } from "../models/mod.ts";
import type { RunOutcome, RunRecord } from "./record.ts";
import { STUDY_RESULTS } from "./report.ts";
import { formatPercent, formatStats, meanStd } from "./stats.ts";

/** The two splits the study published. */
const PUBLISHED = [["val", "validation"], ["train", "training"]] as const;

/** One model's comparison with the study: the figures and the sentence that reads them. */
export interface StudyVerdict {
  model: string;
  title: string;
  /** digitsum's accuracies per published split, one per seed (%). */
  ours: { val: number[]; train: number[]; test: number[] };
  /** The study's published accuracies (seeds 0, 10, 42, %). */
  theirs: { val: readonly number[]; train: readonly number[] };
  /** Validation and training ranges across seeds overlap the study's. */
  reproduced: boolean;
  /** One sentence: reproduced or not, with the numbers, and why when not. */
  sentence: string;
}

/** `10.18-11.18%`, the range across seeds. */
function range(values: readonly number[]): string {
  return `${Math.min(...values).toFixed(2)}-${formatPercent(Math.max(...values))}`;
}

/** The ranges across seeds overlap (a single value inside the other range counts). */
function overlaps(a: readonly number[], b: readonly number[]): boolean {
  return Math.max(...a) >= Math.min(...b) && Math.min(...a) <= Math.max(...b);
}

/**
 * One verdict per study model with finished runs: digitsum reproduces the study on a split when
 * its range of accuracies across seeds overlaps the study's (the spread across seeds is the
 * yardstick: both sides have three seeds). When a split is not reproduced, the PyTorch
 * cross-check of the same seed on the same data says why: if PyTorch lands nearer digitsum than
 * the study, the difference comes from the data, not from the port.
 *
 * @param records digitsum's finished study runs (e.g. the committed records).
 * @param pytorch PyTorch records of the same data (tools/pytorch_study.py), possibly none.
 */
export function studyVerdicts(
  records: readonly Pick<RunOutcome, "model" | "seed" | "accuracy">[],
  pytorch: readonly Pick<RunRecord, "model" | "seed" | "accuracy">[] = [],
): StudyVerdict[] {
  const verdicts: StudyVerdict[] = [];
  for (const [model, theirs] of Object.entries(STUDY_RESULTS)) {
    const runs = records.filter((r) => r.model === model && r.accuracy)
      .sort((a, b) => a.seed - b.seed);
    if (runs.length === 0) continue;
    const title = modelInfo(model).title;
    const ours = {
      val: runs.map((r) => r.accuracy!.val.accuracy),
      train: runs.map((r) => r.accuracy!.train.accuracy),
      test: runs.map((r) => r.accuracy!.test?.accuracy).filter((v): v is number => v !== undefined),
    };
    const parts: string[] = [];
    const missed: string[] = [];
    for (const [split, name] of PUBLISHED) {
      const within = overlaps(ours[split], theirs[split]);
      if (!within) missed.push(name);
      parts.push(
        `${name} ${formatStats(meanStd(ours[split]))}` +
          (ours[split].length > 1 ? ` (${range(ours[split])})` : "") + " against the study's " +
          `${formatStats(meanStd([...theirs[split]]))} (${range(theirs[split])})` +
          (within ? "" : `, ${mean(ours[split]) > mean(theirs[split]) ? "above" : "below"} it`),
      );
    }
    const seeds = runs.map((r) => r.seed).join(", ");
    const reproduced = missed.length === 0;
    let sentence = `${title} (seed${runs.length > 1 ? "s" : ""} ${seeds}): ` +
      (reproduced
        ? "reproduced, the ranges across seeds overlap the study's on both splits: "
        : `not reproduced on ${missed.join(" and ")}: `) +
      parts.join("; ") + ".";
    const why = crossCheckReason(model, runs, pytorch, reproduced ? ["validation"] : missed, {
      explain: !reproduced,
    });
    if (why) sentence += " " + why;
    verdicts.push({ model, title, ours, theirs, reproduced, sentence });
  }
  return verdicts;
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * The PyTorch cross-check as a reason: same seed, same data and split, so a difference between
 * PyTorch and digitsum is the port's, and one they share with each other is the data's.
 */
function crossCheckReason(
  model: string,
  runs: readonly Pick<RunOutcome, "model" | "seed" | "accuracy">[],
  pytorch: readonly Pick<RunRecord, "model" | "seed" | "accuracy">[],
  splits: readonly string[],
  options: { explain: boolean },
): string | undefined {
  for (const torch of pytorch) {
    if (torch.model !== model || !torch.accuracy) continue;
    const ours = runs.find((r) => r.seed === torch.seed);
    if (!ours?.accuracy) continue;
    const figures = splits.map((name) => {
      const split = name === "training" ? "train" : "val";
      const d = ours.accuracy![split].accuracy, t = torch.accuracy![split].accuracy;
      const study = mean(STUDY_RESULTS[model][split]);
      return { name, d, t, portGap: Math.abs(d - t), dataGap: Math.abs(d - study) };
    });
    const text = figures.map((f) =>
      `${f.name} ${formatPercent(f.t)} against digitsum's ${formatPercent(f.d)}`
    ).join(", ");
    const fromData = figures.every((f) => f.portGap <= f.dataGap);
    const line = `PyTorch on the same data and split (seed ${torch.seed}): ${text}`;
    if (!options.explain) return line + ".";
    return line +
      (fromData
        ? ", nearer digitsum than the study, so what differs comes from the data (digitsum's " +
          "generated composites, not the course's files), not from the port."
        : ", so part of the difference lies in the port itself.");
  }
  return undefined;
}
