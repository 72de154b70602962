/**
 * Statistics over seeds and epochs, and how the tables print them: mean and sample standard
 * deviation, percentages as the study printed them, the mean training speed of a run.
 *
 * @module
 */
import type { EpochRecord } from "../training/train.ts";

/** Mean and sample standard deviation (n - 1) of the finished runs of one model. */
export interface Stats {
  mean: number | null;
  /** Sample standard deviation (n - 1); `null` with fewer than two values. */
  std: number | null;
  n: number;
}

/** Mean and sample standard deviation. */
export function meanStd(values: readonly number[]): Stats {
  const n = values.length;
  if (n === 0) return { mean: null, std: null, n };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, std: null, n };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { mean, std: Math.sqrt(variance), n };
}

/** `11.42%`, as the study's tables print accuracies. */
export function formatPercent(value: number): string {
  return `${value.toFixed(2)}%`;
}

/** `10.99 ± 0.39%` (or `11.42% (n=1)` with one value, `—` with none). */
export function formatStats(stats: Stats): string {
  if (stats.mean === null) return "—";
  if (stats.std === null) return `${formatPercent(stats.mean)} (n=1)`;
  return `${stats.mean.toFixed(2)} ± ${stats.std.toFixed(2)}%`;
}

/** `1 epoch`, `15 epochs`. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Mean training images per second over a run's epochs (NaN without epochs). */
export function meanRate(history: readonly EpochRecord[]): number {
  return history.length
    ? history.reduce((n, r) => n + r.trainImagesPerSecond, 0) / history.length
    : NaN;
}
