/**
 * Strokes from a raster digit: how the tests "draw" real MNIST digits with a mouse. The digit is
 * thresholded, thinned to a one-pixel skeleton (Zhang and Suen's method) and the skeleton is
 * walked into polylines, one per pen stroke, in pixel coordinates of the digit image (pixel
 * centres at +0.5).
 *
 * @module
 */
import type { Point, Stroke } from "./drawing.ts";

/** Settings of {@linkcode traceDigit}. */
export interface TraceOptions {
  /** Gray level from which a pixel is ink (0..255). */
  threshold: number;
  /** Skeleton branches shorter than this (pixels) are dropped, unless they are all there is. */
  minStrokePixels: number;
  /** Points on each side averaged to smooth the pixel path (0: none). */
  smoothing: number;
}

/** Defaults for MNIST digits. */
export const DEFAULT_TRACE: Readonly<TraceOptions> = Object.freeze({
  threshold: 128,
  minStrokePixels: 3,
  smoothing: 1,
});

/** The 8 neighbours in Zhang-Suen order: P2 (north) clockwise to P9 (north-west). */
const RING: readonly [number, number][] = [
  [0, -1],
  [1, -1],
  [1, 0],
  [1, 1],
  [0, 1],
  [-1, 1],
  [-1, 0],
  [-1, -1],
];

/**
 * Zhang-Suen thinning of a binary image, in place.
 *
 * @param ink `[height, width]` 1 = ink
 */
export function thin(ink: Uint8Array, width: number, height: number): void {
  const at = (x: number, y: number) =>
    x < 0 || y < 0 || x >= width || y >= height ? 0 : ink[y * width + x];
  let changed = true;
  while (changed) {
    changed = false;
    for (const pass of [0, 1]) {
      const remove: number[] = [];
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          if (!ink[y * width + x]) continue;
          const p = RING.map(([dx, dy]) => at(x + dx, y + dy));
          const b = p.reduce((n, v) => n + v, 0);
          if (b < 2 || b > 6) continue;
          let a = 0;
          for (let i = 0; i < 8; i++) if (!p[i] && p[(i + 1) % 8]) a++;
          if (a !== 1) continue;
          // P2 * P4 * P6 and P4 * P6 * P8 on the first pass, P2 * P4 * P8 and P2 * P6 * P8 on
          // the second.
          const [p2, , p4, , p6, , p8] = p;
          if (
            pass === 0 ? (p2 && p4 && p6) || (p4 && p6 && p8) : (p2 && p4 && p8) || (p2 && p6 && p8)
          ) {
            continue;
          }
          remove.push(y * width + x);
        }
      }
      for (const i of remove) ink[i] = 0;
      if (remove.length > 0) changed = true;
    }
  }
}

/**
 * The skeleton's strokes: a walk along its edges (8-neighbours, without a diagonal where two
 * 4-neighbour steps join the same pixels), starting at end points, then anywhere for loops, each
 * stroke continuing as straight as it can at junctions.
 *
 * @param gray `[height, width]` gray bytes, white ink on black (an MNIST digit)
 * @param size its width and height
 * @param options threshold and shortest stroke
 * @returns strokes in pixel coordinates, pixel centres at +0.5
 */
export function traceDigit(
  gray: Uint8Array,
  size: { width: number; height: number },
  options: Partial<TraceOptions> = {},
): Stroke[] {
  const { threshold, minStrokePixels, smoothing } = { ...DEFAULT_TRACE, ...options };
  const { width, height } = size;
  const ink = Uint8Array.from(gray, (v) => (v >= threshold ? 1 : 0));
  thin(ink, width, height);
  const on = (x: number, y: number) =>
    x >= 0 && y >= 0 && x < width && y < height && ink[y * width + x] === 1;
  const neighbours = (i: number): number[] => {
    const x = i % width;
    const y = (i - x) / width;
    const out: number[] = [];
    for (const [dx, dy] of RING) {
      if (!on(x + dx, y + dy)) continue;
      // A diagonal step that two 4-neighbour steps also make is a duplicate edge.
      if (dx !== 0 && dy !== 0 && (on(x + dx, y) || on(x, y + dy))) continue;
      out.push((y + dy) * width + x + dx);
    }
    return out;
  };
  const used = new Set<string>();
  const key = (a: number, b: number) => (a < b ? `${a},${b}` : `${b},${a}`);
  const free = (i: number) => neighbours(i).filter((j) => !used.has(key(i, j)));
  const point = (i: number): Point => ({ x: (i % width) + 0.5, y: Math.floor(i / width) + 0.5 });
  const walk = (start: number): number[] => {
    const path = [start];
    let current = start;
    let previous = -1;
    for (;;) {
      const options = free(current);
      if (options.length === 0) return path;
      // Prefer the step closest to the current direction.
      let next = options[0];
      if (previous >= 0 && options.length > 1) {
        const dir = [
          current % width - previous % width,
          Math.floor(current / width) -
          Math.floor(previous / width),
        ];
        let best = -Infinity;
        for (const j of options) {
          const step = [
            j % width - current % width,
            Math.floor(j / width) -
            Math.floor(current / width),
          ];
          const cos = (dir[0] * step[0] + dir[1] * step[1]) / Math.hypot(...dir) /
            Math.hypot(...step);
          if (cos > best) {
            best = cos;
            next = j;
          }
        }
      }
      used.add(key(current, next));
      path.push(next);
      previous = current;
      current = next;
    }
  };
  const pixels: number[] = [];
  for (let i = 0; i < ink.length; i++) if (ink[i]) pixels.push(i);
  const paths: number[][] = [];
  // End points first (one neighbour), then whatever is left (loops, junction remainders).
  const ends = pixels.filter((i) => neighbours(i).length === 1);
  for (const start of [...ends, ...pixels]) {
    while (free(start).length > 0) paths.push(walk(start));
  }
  // Isolated pixels are strokes of one point.
  for (const i of pixels) if (neighbours(i).length === 0) paths.push([i]);
  const kept = paths.filter((p) => p.length >= minStrokePixels);
  const chosen = kept.length > 0 ? kept : paths;
  return chosen.map((path) => smooth(path.map(point), smoothing));
}

/** Moving average over `2 * radius + 1` points (the ends stay put): a pixel path made smooth. */
function smooth(stroke: Stroke, radius: number): Stroke {
  if (radius <= 0 || stroke.length < 3) return stroke;
  return stroke.map((p, i) => {
    if (i === 0 || i === stroke.length - 1) return p;
    const r = Math.min(radius, i, stroke.length - 1 - i);
    let x = 0;
    let y = 0;
    for (let k = i - r; k <= i + r; k++) {
      x += stroke[k].x;
      y += stroke[k].y;
    }
    return { x: x / (2 * r + 1), y: y / (2 * r + 1) };
  });
}

/** Where one digit is drawn: its 28 x 28 box's top-left corner and side, in model pixels. */
export interface DigitPlacement {
  x: number;
  y: number;
  size: number;
}

/**
 * Strokes of several digits drawn side by side: each digit's traced strokes mapped from its
 * `side x side` image into its placement box.
 *
 * @param digits per digit its strokes (from {@linkcode traceDigit}) and the side of its image
 * @param placements per digit its box, same order
 * @returns all strokes, in model pixels
 */
export function placeDigits(
  digits: readonly { strokes: Stroke[]; side: number }[],
  placements: readonly DigitPlacement[],
): Stroke[] {
  return digits.flatMap((digit, i) => {
    const { x, y, size } = placements[i];
    const scale = size / digit.side;
    return digit.strokes.map((s) => s.map((p) => ({ x: x + p.x * scale, y: y + p.y * scale })));
  });
}

/** Ranges of {@linkcode handLayout}. */
export interface HandLayoutOptions {
  /** Smallest side of a digit's 28 x 28 box, px (MNIST's ink is about 20 / 28 of it). */
  sizeMin: number;
  /** Largest side. */
  sizeMax: number;
  /** Step from one box's left edge to the next, as fractions of the box side. */
  stepMin: number;
  stepMax: number;
}

/** A person's spread: ink 17..29 px tall, neighbours from nearly touching to far apart. */
export const DEFAULT_HAND_LAYOUT: Readonly<HandLayoutOptions> = Object.freeze({
  sizeMin: 24,
  sizeMax: 40,
  stepMin: 0.65,
  stepMax: 1.25,
});

/**
 * Places `count` digits left to right as a person might draw them in the 40 x 168 area: random
 * sizes, heights and gaps (ink kept inside the area, the row squeezed to fit its width).
 *
 * @param count number of digits
 * @param random uniform numbers in [0, 1) (a seeded generator for repeatable layouts)
 * @param options overrides of {@linkcode DEFAULT_HAND_LAYOUT}
 * @returns one box per digit
 */
export function handLayout(
  count: number,
  random: () => number,
  options: Partial<HandLayoutOptions> = {},
): DigitPlacement[] {
  const { sizeMin, sizeMax, stepMin, stepMax } = { ...DEFAULT_HAND_LAYOUT, ...options };
  // MNIST's ink lies in rows 4..24 of 28: keep that part between 1 and 39 px.
  const inkTop = 4 / 28;
  const inkBottom = 24 / 28;
  const out: DigitPlacement[] = [];
  let x = 2 + 6 * random();
  for (let i = 0; i < count; i++) {
    const size = sizeMin + (sizeMax - sizeMin) * random();
    const yMin = 1 - inkTop * size;
    const yMax = 39 - inkBottom * size;
    out.push({ x, y: yMin + (yMax - yMin) * random(), size });
    x += size * (stepMin + (stepMax - stepMin) * random());
  }
  const last = out[out.length - 1];
  const right = last ? last.x + last.size * inkBottom : 0;
  if (right > 166) {
    const squeeze = 166 / right;
    for (const p of out) p.x *= squeeze;
  }
  return out;
}
