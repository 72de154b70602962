/**
 * Image effects on 40 x 168 uint8 composites, in place: thinner or thicker strokes (gray-level
 * morphology), Gaussian blur, fainter ink and noise. The test conditions (`conditions.ts`) apply
 * them with fixed strengths to MNIST test digits, for reporting; SumNet's pretraining strips
 * (`strips.ts`) apply them with random strengths to MNIST training digits, as augmentation.
 *
 * @module
 */

import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../constants.ts";
import { fileSeed, Sfc32 } from "./generate.ts";

/** Image effects applied to a whole composite after the digits are drawn (in this order). */
export interface ConditionEffects {
  /**
   * Stroke change in 1 px steps of gray-level morphology with a 3 x 3 cross: positive dilates
   * (thicker strokes), negative erodes (thinner). `strokeMix` blends the result with the input.
   */
  stroke?: number;
  /** Share (0..1) of the morphology result in the output (default 1). */
  strokeMix?: number;
  /** Gaussian blur with this sigma in px. */
  blurSigma?: number;
  /** Ink multiplied by this factor (below 1: fainter). */
  contrast?: number;
  /** Gaussian noise with this sigma (gray levels, 0..255 scale) added to every pixel. */
  noiseSigma?: number;
}

/** One step of gray-level morphology with a 3 x 3 cross: max (dilate) or min (erode). */
function morphologyStep(image: Uint8Array, offset: number, dilate: boolean): void {
  const src = image.slice(offset, offset + IMAGE_SIZE);
  const pick = dilate ? Math.max : Math.min;
  for (let y = 0; y < IMAGE_HEIGHT; y++) {
    for (let x = 0; x < IMAGE_WIDTH; x++) {
      const p = y * IMAGE_WIDTH + x;
      // Neighbours outside the image are ignored.
      let v = src[p];
      if (x > 0) v = pick(v, src[p - 1]);
      if (x < IMAGE_WIDTH - 1) v = pick(v, src[p + 1]);
      if (y > 0) v = pick(v, src[p - IMAGE_WIDTH]);
      if (y < IMAGE_HEIGHT - 1) v = pick(v, src[p + IMAGE_WIDTH]);
      image[offset + p] = v;
    }
  }
}

/** 1-D Gaussian kernel with radius ceil(3 sigma), summing to 1. */
function gaussianKernel(sigma: number): Float64Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float64Array(2 * radius + 1);
  let total = 0;
  for (let i = -radius; i <= radius; i++) {
    kernel[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma));
    total += kernel[i + radius];
  }
  return kernel.map((v) => v / total);
}

/** Separable Gaussian blur of one composite; black (0) outside the image. */
function blurImage(image: Uint8Array, offset: number, kernel: Float64Array): void {
  const radius = (kernel.length - 1) / 2;
  const rows = new Float64Array(IMAGE_SIZE);
  for (let y = 0; y < IMAGE_HEIGHT; y++) {
    for (let x = 0; x < IMAGE_WIDTH; x++) {
      let v = 0;
      for (let i = -radius; i <= radius; i++) {
        const xx = x + i;
        if (xx >= 0 && xx < IMAGE_WIDTH) {
          v += kernel[i + radius] * image[offset + y * IMAGE_WIDTH + xx];
        }
      }
      rows[y * IMAGE_WIDTH + x] = v;
    }
  }
  for (let y = 0; y < IMAGE_HEIGHT; y++) {
    for (let x = 0; x < IMAGE_WIDTH; x++) {
      let v = 0;
      for (let i = -radius; i <= radius; i++) {
        const yy = y + i;
        if (yy >= 0 && yy < IMAGE_HEIGHT) v += kernel[i + radius] * rows[yy * IMAGE_WIDTH + x];
      }
      image[offset + y * IMAGE_WIDTH + x] = Math.min(255, Math.round(v));
    }
  }
}

/** A standard normal deviate (Box-Muller) from `rng`. */
function normal(rng: Sfc32): number {
  const u = 1 - rng.float(); // (0, 1]
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.float());
}

/**
 * Applies `effects` to every composite of `images` (`[n, 40, 168]` uint8) in place, in the
 * order stroke, blur, contrast, noise. Deterministic for a seed (only noise draws numbers).
 *
 * @param images the composites
 * @param effects what to do
 * @param seed seed of the noise
 */
export function applyEffects(images: Uint8Array, effects: ConditionEffects, seed: number): void {
  const count = images.length / IMAGE_SIZE;
  if (!Number.isInteger(count)) {
    throw new RangeError(`applyEffects: ${images.length} bytes are not whole 40 x 168 images`);
  }
  const { stroke = 0, strokeMix = 1, blurSigma = 0, contrast = 1, noiseSigma = 0 } = effects;
  if (
    !Number.isInteger(stroke) || !(strokeMix >= 0 && strokeMix <= 1) || !(blurSigma >= 0) ||
    !(contrast >= 0) || !(noiseSigma >= 0)
  ) {
    throw new RangeError(`applyEffects: invalid effects ${JSON.stringify(effects)}`);
  }
  const kernel = blurSigma > 0 ? gaussianKernel(blurSigma) : undefined;
  const rng = new Sfc32(fileSeed(seed, "noise"));
  for (let n = 0; n < count; n++) {
    const offset = n * IMAGE_SIZE;
    if (stroke !== 0) {
      const before = strokeMix < 1 ? images.slice(offset, offset + IMAGE_SIZE) : undefined;
      for (let s = 0; s < Math.abs(stroke); s++) morphologyStep(images, offset, stroke > 0);
      if (before) {
        for (let p = 0; p < IMAGE_SIZE; p++) {
          images[offset + p] = Math.round(
            strokeMix * images[offset + p] + (1 - strokeMix) * before[p],
          );
        }
      }
    }
    if (kernel) blurImage(images, offset, kernel);
    if (contrast !== 1) {
      for (let p = offset; p < offset + IMAGE_SIZE; p++) {
        images[p] = Math.min(255, Math.round(images[p] * contrast));
      }
    }
    if (noiseSigma > 0) {
      for (let p = offset; p < offset + IMAGE_SIZE; p++) {
        const v = Math.round(images[p] + noiseSigma * normal(rng));
        images[p] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
}
