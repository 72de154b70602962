/**
 * The test composites shipped with the page (`samples/test_composites.json` describes
 * `samples/test_composites.png`, the images stacked top to bottom).
 *
 * @module
 */

/** What the test composites asset holds (written by `web/build.ts`). */
export interface SampleInfo {
  /** Number of 40 x 168 images stacked in the PNG. */
  count: number;
  /** Their sums. */
  labels: number[];
  /** Their four digits each, left to right. */
  digits: number[][];
  /** Where they come from. */
  source: string;
}
