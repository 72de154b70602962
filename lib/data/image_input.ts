/**
 * Turns any picture of a row of digits into what the models read: one 40 x 168 gray image, white
 * digits on black. `deno task predict` uses it for PNG files and the browser page (`web/`) for
 * dropped images, so both see the same pixels. No file I/O: it runs in Deno and in a browser.
 *
 * @module
 */
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../constants.ts";
import { type DecodedPng, decodePng, pngToGray } from "../io/png.ts";

/** Smallest side accepted, px. */
const MIN_SIDE = 8;
/** Accepted width / height ratios (the task's images are 4.2 times as wide as tall). */
const MIN_ASPECT = 2;
const MAX_ASPECT = 10;
/** Smallest spread of gray levels of an image that is not blank. */
const MIN_CONTRAST = 32;

/** One image ready for the model, with notes on how it was converted. */
export interface ModelImage {
  /** `[40, 168]` uint8, white digits on black. */
  pixels: Uint8Array;
  /** What was done to the input, one line each, starting with its name. */
  notes: string[];
}

/**
 * Resizes a gray image to `outH x outW` by area averaging (down) / bilinear weights (up).
 *
 * @param src `[h, w]` gray bytes
 * @returns `[outH, outW]` gray bytes
 */
export function resizeGray(
  src: Uint8Array,
  size: { width: number; height: number },
  out: { width: number; height: number },
): Uint8Array {
  const result = new Uint8Array(out.width * out.height);
  const sy = size.height / out.height;
  const sx = size.width / out.width;
  for (let y = 0; y < out.height; y++) {
    const y0 = y * sy;
    const y1 = Math.max(y0 + 1e-6, (y + 1) * sy);
    for (let x = 0; x < out.width; x++) {
      const x0 = x * sx;
      const x1 = Math.max(x0 + 1e-6, (x + 1) * sx);
      // Average of the source area covered by this output pixel (a box filter).
      let total = 0;
      let weight = 0;
      for (let yy = Math.floor(y0); yy < Math.min(size.height, Math.ceil(y1)); yy++) {
        const wy = Math.min(y1, yy + 1) - Math.max(y0, yy);
        for (let xx = Math.floor(x0); xx < Math.min(size.width, Math.ceil(x1)); xx++) {
          const w = wy * (Math.min(x1, xx + 1) - Math.max(x0, xx));
          total += w * src[yy * size.width + xx];
          weight += w;
        }
      }
      result[y * out.width + x] = weight > 0 ? Math.round(total / weight) : 0;
    }
  }
  return result;
}

/** Mean of the outermost pixels of a gray image. */
function borderMean(gray: Uint8Array, width: number, height: number): number {
  let total = 0;
  let count = 0;
  for (let x = 0; x < width; x++) {
    total += gray[x] + gray[(height - 1) * width + x];
    count += 2;
  }
  for (let y = 1; y < height - 1; y++) {
    total += gray[y * width] + gray[y * width + width - 1];
    count += 2;
  }
  return total / count;
}

/**
 * Converts a gray picture to the model's input: black digits on white are inverted to white on
 * black; other sizes are scaled (aspect kept) and padded with black to 40 x 168, centred.
 * Pictures that cannot hold a row of digits (too small, not wide, blank) are refused.
 *
 * @param gray `[height, width]` gray bytes
 * @param size its width and height, and `name` for notes and errors
 * @returns the image and the notes on its conversion
 * @throws Error naming the picture and what is wrong with it
 */
export function grayToModelImage(
  gray: Uint8Array,
  size: { width: number; height: number; name: string },
): ModelImage {
  const { width, height, name } = size;
  const notes: string[] = [];
  if (width < MIN_SIDE || height < MIN_SIDE) {
    throw new Error(
      `Cannot use ${name}: ${width} x ${height} px is too small (at least ${MIN_SIDE} px a side)`,
    );
  }
  const aspect = width / height;
  if (aspect < MIN_ASPECT || aspect > MAX_ASPECT) {
    throw new Error(
      `Cannot use ${name}: ${width} x ${height} px (width/height ${aspect.toFixed(2)}) is not a ` +
        `row of four digits; expected ${IMAGE_WIDTH} x ${IMAGE_HEIGHT} (width/height between ` +
        `${MIN_ASPECT} and ${MAX_ASPECT})`,
    );
  }
  let min = 255;
  let max = 0;
  for (const v of gray) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (max - min < MIN_CONTRAST) {
    throw new Error(`Cannot use ${name}: the image is blank (gray levels ${min}..${max})`);
  }
  let out = gray;
  if (borderMean(gray, width, height) > 127) {
    out = gray.map((v) => 255 - v);
    notes.push(`${name}: dark digits on a light background, inverted to white on black`);
  }
  if (width !== IMAGE_WIDTH || height !== IMAGE_HEIGHT) {
    const scale = Math.min(IMAGE_WIDTH / width, IMAGE_HEIGHT / height);
    const w = Math.max(1, Math.min(IMAGE_WIDTH, Math.round(width * scale)));
    const h = Math.max(1, Math.min(IMAGE_HEIGHT, Math.round(height * scale)));
    const small = resizeGray(out, { width, height }, { width: w, height: h });
    const canvas = new Uint8Array(IMAGE_SIZE);
    const left = Math.floor((IMAGE_WIDTH - w) / 2);
    const top = Math.floor((IMAGE_HEIGHT - h) / 2);
    for (let y = 0; y < h; y++) {
      canvas.set(small.subarray(y * w, (y + 1) * w), (top + y) * IMAGE_WIDTH + left);
    }
    out = canvas;
    notes.push(
      `${name}: resized from ${width} x ${height} to ${w} x ${h} (aspect kept)` +
        (w !== IMAGE_WIDTH || h !== IMAGE_HEIGHT
          ? ` and padded with black to ${IMAGE_WIDTH} x ${IMAGE_HEIGHT}`
          : ""),
    );
  }
  return { pixels: out, notes };
}

/**
 * Converts decoded pixels (a PNG, or a browser's `ImageData` as 4 channels) to the model's input:
 * colour or alpha to gray first ({@linkcode pngToGray}: alpha over black), then
 * {@linkcode grayToModelImage}.
 *
 * @param image decoded pixels
 * @param name the picture's name for notes and errors
 * @returns the image and the notes on its conversion
 */
export function decodedToModelImage(image: DecodedPng, name: string): ModelImage {
  const notes: string[] = [];
  if (image.channels !== 1) {
    const kind = { 2: "gray+alpha", 3: "RGB", 4: "RGBA" }[image.channels];
    notes.push(`${name}: ${kind} converted to gray`);
  }
  const converted = grayToModelImage(pngToGray(image), { ...image, name });
  return { pixels: converted.pixels, notes: [...notes, ...converted.notes] };
}

/**
 * Decodes a PNG file's bytes and converts them to the model's input
 * ({@linkcode decodedToModelImage}).
 *
 * @param bytes the PNG file
 * @param name its name for notes and errors
 * @returns the image and the notes on its conversion
 * @throws Error naming the file when it is not a usable PNG
 */
export async function pngToModelImage(bytes: Uint8Array, name: string): Promise<ModelImage> {
  return decodedToModelImage(await decodePng(bytes, name), name);
}
