/**
 * Hand-drawn digits to the model's input. A person draws with any pen width, at any height and
 * size, with any spacing; SumNet was trained on MNIST digits about 20 px tall with strokes about
 * 3 px wide. So the strokes are kept as lines (not pixels) and redrawn:
 *
 * 1. strokes whose horizontal extents overlap form one group (normally one digit); a short group
 *    close to its neighbour (a detached tail or bar) joins it; a speck far from everything (a
 *    tap) is left out;
 * 2. each group is scaled to the height of an MNIST digit in the composites and centred
 *    vertically; a group's own height counts only within a factor of the median group height,
 *    so a stray dot is not blown up and one big digit is not shrunk beyond the others;
 * 3. the groups are laid out left to right with MNIST-like gaps and the row is centred;
 * 4. the lines are drawn with an MNIST-like stroke (a solid core, a soft 1 px edge) into one
 *    40 x 168 uint8 image, white on black: exactly the input contract of `deno task predict`.
 *
 * No DOM and no file I/O: the browser page (`web/`) and the tests run the same code.
 *
 * @module
 */
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../constants.ts";

/** A point in model pixels: x in 0..168, y in 0..40 (y down). */
export interface Point {
  x: number;
  y: number;
}

/** One pen-down-to-pen-up line. */
export type Stroke = Point[];

/** Settings of {@linkcode drawingToModelImage}. */
export interface DrawingOptions {
  /** Ink height of a redrawn digit, px (MNIST's 20 px ink in the composites' 27..31 px boxes). */
  digitHeight: number;
  /** Heights within this factor of the median group height count as they are (clamped beyond). */
  sizeSpread: number;
  /** A group shorter than this fraction of the median height is a fragment of its neighbour... */
  fragmentHeight: number;
  /** ...when they are closer than this fraction of the median height... */
  fragmentGap: number;
  /** A group no side of which reaches this fraction (a speck) is left out when it is not close. */
  speckSize: number;
  /** Stroke width at half intensity, px. */
  penWidth: number;
  /** Width of the stroke's soft edge, px. */
  edgeWidth: number;
  /** Strokes closer than this horizontally (px, in the drawing) join one group. */
  joinGap: number;
  /** Preferred gap between neighbouring redrawn digits, px. */
  digitGap: number;
  /** Smallest gap kept when the row is too wide (the row is shrunk below this). */
  minDigitGap: number;
  /** Empty columns kept at each end of the row, px. */
  margin: number;
}

/** The settings the page uses (chosen on traced MNIST training digits; see docs/WEB.md). */
export const DEFAULT_DRAWING: Readonly<DrawingOptions> = Object.freeze({
  digitHeight: 20,
  sizeSpread: 1.5,
  fragmentHeight: 0.6,
  fragmentGap: 0.25,
  speckSize: 0.3,
  penWidth: 2.8,
  edgeWidth: 1,
  joinGap: 0.5,
  digitGap: 8,
  minDigitGap: 2,
  margin: 4,
});

/** An axis-aligned box. */
export interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** A group of strokes (normally one digit) and where it went in the model's image. */
export interface StrokeGroup {
  /** Indices of its strokes in the drawing. */
  strokes: number[];
  /** Its extent in the drawing. */
  box: Box;
  /** Its extent in the model's image. */
  placed: Box;
  /** The map from drawing to model pixels: `x' = x * scale + dx`, `y' = y * scale + dy`. */
  scale: number;
  dx: number;
  dy: number;
}

/** A drawing converted for the model. */
export interface DrawnImage {
  /** `[40, 168]` uint8, white digits on black; all 0 for an empty drawing. */
  pixels: Uint8Array;
  /** The stroke groups, left to right. */
  groups: StrokeGroup[];
}

/** Extent of some points. */
function boxOf(points: Iterable<Point>): Box {
  const box = { left: Infinity, top: Infinity, right: -Infinity, bottom: -Infinity };
  for (const p of points) {
    box.left = Math.min(box.left, p.x);
    box.right = Math.max(box.right, p.x);
    box.top = Math.min(box.top, p.y);
    box.bottom = Math.max(box.bottom, p.y);
  }
  return box;
}

/**
 * Groups strokes whose horizontal extents overlap (or come within `joinGap` px), left to right.
 * Empty strokes are ignored.
 *
 * @param strokes the drawing
 * @param joinGap largest horizontal gap inside one group, px
 * @returns per group its stroke indices and extent
 */
export function groupStrokes(
  strokes: readonly Stroke[],
  joinGap: number = DEFAULT_DRAWING.joinGap,
): { strokes: number[]; box: Box }[] {
  const spans = strokes
    .map((stroke, index) => ({ index, box: boxOf(stroke) }))
    .filter((s) => strokes[s.index].length > 0)
    .sort((a, b) => a.box.left - b.box.left);
  const groups: { strokes: number[]; box: Box }[] = [];
  for (const span of spans) {
    const last = groups[groups.length - 1];
    if (last && span.box.left <= last.box.right + joinGap) {
      last.strokes.push(span.index);
      last.box = union(last.box, span.box);
    } else {
      groups.push({ strokes: [span.index], box: { ...span.box } });
    }
  }
  return groups;
}

/** The extent of two boxes together. */
function union(a: Box, b: Box): Box {
  return {
    left: Math.min(a.left, b.left),
    top: Math.min(a.top, b.top),
    right: Math.max(a.right, b.right),
    bottom: Math.max(a.bottom, b.bottom),
  };
}

/**
 * Joins fragments to their nearest neighbour: a group shorter than `fragmentHeight` times the
 * median group height that lies within `fragmentGap` times that height of a neighbour (a tail or
 * bar drawn apart from the rest of its digit). A speck (both sides under `speckSize` times that
 * height) farther away than that is left out. Full-height groups such as a "1" never join.
 *
 * @param groups from {@linkcode groupStrokes}, left to right
 * @param options the fractions
 * @returns the groups after joining (and without far specks), left to right
 */
export function joinFragments(
  groups: { strokes: number[]; box: Box }[],
  options: Pick<DrawingOptions, "fragmentHeight" | "fragmentGap" | "speckSize"> = DEFAULT_DRAWING,
): { strokes: number[]; box: Box }[] {
  if (groups.length < 2) return groups;
  const typical = median(groups.map((g) => g.box.bottom - g.box.top));
  const out = groups.map((g) => ({ strokes: [...g.strokes], box: { ...g.box } }));
  for (let i = 0; i < out.length && out.length > 1;) {
    const g = out[i];
    if (g.box.bottom - g.box.top >= options.fragmentHeight * typical) {
      i++;
      continue;
    }
    const gapLeft = i > 0 ? g.box.left - out[i - 1].box.right : Infinity;
    const gapRight = i < out.length - 1 ? out[i + 1].box.left - g.box.right : Infinity;
    const j = gapLeft <= gapRight ? i - 1 : i + 1;
    const speck = Math.max(g.box.right - g.box.left, g.box.bottom - g.box.top) <
      options.speckSize * typical;
    const far = Math.min(gapLeft, gapRight) > options.fragmentGap * typical;
    if (far && !speck) {
      i++;
      continue;
    }
    if (far) {
      out.splice(i, 1); // a stray speck far from everything (a tap): left out
      continue;
    }
    const [a, b] = j < i ? [out[j], g] : [g, out[j]];
    out.splice(Math.min(i, j), 2, {
      strokes: [...a.strokes, ...b.strokes],
      box: union(a.box, b.box),
    });
    i = Math.max(0, Math.min(i, j));
  }
  return out;
}

/** Median of non-empty numbers. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Scales and places each group (steps 2 and 3 of the module's recipe).
 *
 * @param groups from {@linkcode groupStrokes}
 * @param options the drawing settings
 * @returns the groups with their maps to model pixels
 */
export function layoutGroups(
  groups: { strokes: number[]; box: Box }[],
  options: DrawingOptions = DEFAULT_DRAWING,
): StrokeGroup[] {
  if (groups.length === 0) return [];
  const heights = groups.map((g) => g.box.bottom - g.box.top);
  const typical = Math.max(median(heights), 1e-3);
  // A pen's width is part of the ink: heights are measured between stroke centres, so add it.
  const inkHeight = options.digitHeight - options.penWidth;
  const scales = heights.map((h) =>
    inkHeight / Math.min(options.sizeSpread * typical, Math.max(h, typical / options.sizeSpread))
  );
  const widths = groups.map((g, i) => (g.box.right - g.box.left) * scales[i]);
  const inkWidth = (i: number) => widths[i] + options.penWidth;
  const room = IMAGE_WIDTH - 2 * options.margin;
  const total = widths.reduce((n, _, i) => n + inkWidth(i), 0);
  const gaps = groups.length - 1;
  let gap = options.digitGap;
  let shrink = 1;
  if (total + gaps * gap > room) {
    gap = Math.max(options.minDigitGap, gaps > 0 ? (room - total) / gaps : 0);
    if (total + gaps * gap > room) shrink = (room - gaps * gap) / total;
  }
  const rowWidth = shrink * total + gaps * gap;
  let x = (IMAGE_WIDTH - rowWidth) / 2;
  return groups.map((g, i) => {
    const scale = scales[i] * shrink;
    const width = (g.box.right - g.box.left) * scale;
    const height = (g.box.bottom - g.box.top) * scale;
    const half = (options.penWidth * shrink) / 2;
    const left = x + half;
    const top = (IMAGE_HEIGHT - height) / 2;
    x += inkWidth(i) * shrink + gap;
    return {
      ...g,
      placed: { left, top, right: left + width, bottom: top + height },
      scale,
      dx: left - g.box.left * scale,
      dy: top - g.box.top * scale,
    };
  });
}

/** Squared distance from (px, py) to the segment a-b. */
function segmentDistance2(px: number, py: number, a: Point, b: Point): number {
  const vx = b.x - a.x;
  const vy = b.y - a.y;
  const length2 = vx * vx + vy * vy;
  let t = length2 > 0 ? ((px - a.x) * vx + (py - a.y) * vy) / length2 : 0;
  t = Math.max(0, Math.min(1, t));
  const dx = px - (a.x + t * vx);
  const dy = py - (a.y + t * vy);
  return dx * dx + dy * dy;
}

/**
 * Draws lines into a 40 x 168 image: full intensity within `penWidth / 2 - edgeWidth / 2` of a
 * line, falling linearly to 0 over `edgeWidth` (so `penWidth` is the width at half intensity).
 * Overlapping lines combine with max.
 *
 * @param lines polylines in model pixels (a single point draws a dot)
 * @param options pen and edge width
 * @returns `[40, 168]` uint8
 */
export function renderLines(
  lines: readonly Stroke[],
  options: { penWidth: number; edgeWidth: number } = DEFAULT_DRAWING,
): Uint8Array {
  const out = new Float32Array(IMAGE_SIZE);
  const core = Math.max(0, options.penWidth / 2 - options.edgeWidth / 2);
  const reach = core + options.edgeWidth;
  for (const line of lines) {
    for (let i = 0; i < line.length; i++) {
      const a = line[i];
      const b = line[Math.min(i + 1, line.length - 1)];
      if (i > 0 && i === line.length - 1) break;
      const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - reach));
      const x1 = Math.min(IMAGE_WIDTH - 1, Math.ceil(Math.max(a.x, b.x) + reach));
      const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - reach));
      const y1 = Math.min(IMAGE_HEIGHT - 1, Math.ceil(Math.max(a.y, b.y) + reach));
      for (let y = y0; y <= y1; y++) {
        for (let x = x0; x <= x1; x++) {
          const d = Math.sqrt(segmentDistance2(x + 0.5, y + 0.5, a, b));
          const v = d <= core ? 1 : 1 - (d - core) / options.edgeWidth;
          const p = y * IMAGE_WIDTH + x;
          if (v > out[p]) out[p] = v;
        }
      }
    }
  }
  return Uint8Array.from(out, (v) => Math.round(255 * v));
}

/**
 * Converts a drawing to the model's input (the module's recipe).
 *
 * @param strokes the drawing, in any units whose aspect is the screen's (model pixels on the
 *   page)
 * @param options overrides of {@linkcode DEFAULT_DRAWING}
 * @returns the image and the stroke groups with their placement
 */
export function drawingToModelImage(
  strokes: readonly Stroke[],
  options: Partial<DrawingOptions> = {},
): DrawnImage {
  const settings = { ...DEFAULT_DRAWING, ...options };
  const groups = layoutGroups(
    joinFragments(groupStrokes(strokes, settings.joinGap), settings),
    settings,
  );
  const lines: Stroke[] = [];
  for (const g of groups) {
    for (const index of g.strokes) {
      lines.push(strokes[index].map((p) => ({ x: p.x * g.scale + g.dx, y: p.y * g.scale + g.dy })));
    }
  }
  return { pixels: renderLines(lines, settings), groups };
}
