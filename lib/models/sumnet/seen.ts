/**
 * How many digits SumNet sees in an image, from a read-out alone (no TensorFlow.js: the browser
 * page's main thread uses it too).
 *
 * @module
 */
import { NOTHING, NUM_CELL_CLASSES, NUM_CELLS } from "../../constants.ts";
import type { Explanation } from "./core.ts";

/**
 * The expected number of digits in a read image: the sum over the 21 cells of P(a digit is
 * centred here). SumNet's sum assumes four; the page warns when this rounds to another number.
 *
 * @param explanation a read-out from `explainImage` or `explainBatch`
 * @returns the expected digit count (0..21)
 */
export function digitsSeen(explanation: Pick<Explanation, "cells">): number {
  let count = 0;
  for (let l = 0; l < NUM_CELLS; l++) {
    count += 1 - explanation.cells[l * NUM_CELL_CLASSES + NOTHING];
  }
  return count;
}
