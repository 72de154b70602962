/**
 * `deno task predict <image.png|images.npy> [more files] [--model trained_models/sumnet] [--explain]`
 *
 * Prints the predicted sum of every image: one line per PNG, one per image of an `.npy` file
 * (`N x 40 x 168` uint8, or one `40 x 168` image). With `--explain` (SumNet checkpoints), also the
 * four digits the model reads, where, and how sure it is.
 *
 * PNG inputs are converted to what the model expects, each step said in a `note:` line: colour or
 * alpha to gray, black digits on white inverted to white on black, other sizes scaled (aspect kept)
 * and padded with black to 40 x 168. Images that cannot hold a row of digits are refused.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, extname } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { checkpointTask, loadCheckpoint } from "../lib/checkpoint.ts";
import { BATCH_SIZE, IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../lib/constants.ts";
import type { Task } from "../lib/models.ts";
import { readNpy } from "../lib/npy.ts";
import { pngToModelImage } from "../lib/image_input.ts";
import { CELL_LOGITS_LAYER, explainBatch, type Explanation } from "../lib/sumnet.ts";
import { predictBatch } from "../lib/train.ts";
import { runMain } from "../lib/cli.ts";

export { resizeGray } from "../lib/image_input.ts";

/** Checkpoint used when `--model` is not given. */
export const DEFAULT_MODEL_DIR = "trained_models/sumnet";
const USAGE = `Usage: deno task predict <image.png|images.npy> [more files] [options]

  --model DIR     checkpoint directory (default ${DEFAULT_MODEL_DIR})
  --explain       also print the digits the model reads (SumNet checkpoints)
  --backend NAME  auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
`;

/** Images ready for the model, with the notes on how they were converted. */
export interface InputImages {
  /** Label per image for output lines, e.g. `digits.png` or `images.npy[3]`. */
  names: string[];
  /** `[n, 40, 168]` uint8, white digits on black. */
  pixels: Uint8Array;
  /** What was done to the input (conversions), one line each. */
  notes: string[];
}

/**
 * Reads a PNG and converts it to one 40 x 168 white-on-black image (lib/image_input.ts).
 *
 * @param path the PNG file
 * @returns the image and the notes on its conversion
 * @throws Error naming the file when it is not a usable PNG
 */
export async function readPngInput(path: string): Promise<InputImages> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`);
  }
  const { pixels, notes } = await pngToModelImage(bytes, path);
  return { names: [basename(path)], pixels, notes };
}

/**
 * Reads an `.npy` file of images: uint8 `[N, 40, 168]` (or one `[40, 168]` image).
 *
 * @param path the `.npy` file
 * @returns the images, named `file.npy[i]`
 * @throws Error naming the file when its dtype or shape is not that
 */
export async function readNpyInput(path: string): Promise<InputImages> {
  const array = await readNpy(path);
  const { shape, dtype } = array;
  const single = shape.length === 2 && shape[0] === IMAGE_HEIGHT && shape[1] === IMAGE_WIDTH;
  const stack = shape.length === 3 && shape[1] === IMAGE_HEIGHT && shape[2] === IMAGE_WIDTH;
  if (dtype !== "uint8" || !(single || stack)) {
    throw new Error(
      `Cannot use ${path}: expected uint8 images of shape [N, ${IMAGE_HEIGHT}, ${IMAGE_WIDTH}], ` +
        `got ${dtype} [${shape.join(", ")}]`,
    );
  }
  const count = single ? 1 : shape[0];
  if (count === 0) throw new Error(`Cannot use ${path}: it holds no images`);
  const name = basename(path);
  return {
    names: Array.from({ length: count }, (_, i) => `${name}[${i}]`),
    pixels: array.data as Uint8Array,
    notes: [],
  };
}

/**
 * Reads one input file by its extension (`.png` or `.npy`).
 *
 * @throws Error for other extensions
 */
export async function readInput(path: string): Promise<InputImages> {
  const ext = extname(path).toLowerCase();
  if (ext === ".png") return await readPngInput(path);
  if (ext === ".npy") return await readNpyInput(path);
  throw new Error(`Cannot use ${path}: expected a .png image or a .npy file of images`);
}

/** One explanation as printed lines (after the sum line). */
export function formatExplanation(explanation: Explanation): string[] {
  const lines = [
    `  digits: ${explanation.digits.map((d) => d.digit).join(" + ")} = ${explanation.sum}`,
  ];
  for (const d of explanation.digits) {
    const other = d.runnerUp.digit === null ? "nothing" : String(d.runnerUp.digit);
    lines.push(
      `  ${d.digit} at columns ${d.columns[0]}-${d.columns[1] - 1} (centre ${d.centre}): ` +
        `p ${d.probability.toFixed(3)}, next ${other} ${d.runnerUp.probability.toFixed(3)}`,
    );
  }
  return lines;
}

/** Options of {@linkcode predictImages}. */
export interface PredictOptions {
  /** Compute SumNet explanations too. */
  explain?: boolean;
  /** Images per forward pass (default 64). */
  batchSize?: number;
}

/**
 * Predicted sums (and explanations) for `[n, 40, 168]` uint8 images.
 *
 * @param model a loaded checkpoint's model
 * @param pixels the images
 * @returns sums, and explanations when asked for (SumNet only)
 */
export async function predictImages(
  model: tf.LayersModel,
  pixels: Uint8Array,
  options: PredictOptions & { task: Task },
): Promise<{ sums: number[]; explanations?: Explanation[] }> {
  const count = pixels.length / IMAGE_SIZE;
  const batchSize = options.batchSize ?? BATCH_SIZE;
  const sums: number[] = [];
  const explanations: Explanation[] = [];
  for (let start = 0; start < count; start += batchSize) {
    const size = Math.min(batchSize, count - start);
    const x = tf.tidy(() =>
      tf.tensor4d(
        Float32Array.from(pixels.subarray(start * IMAGE_SIZE, (start + size) * IMAGE_SIZE)),
        [size, IMAGE_HEIGHT, IMAGE_WIDTH, 1],
      ).div(255)
    ) as tf.Tensor4D;
    try {
      if (options.explain) {
        const batch = await explainBatch(model, x);
        explanations.push(...batch);
        sums.push(...batch.map((e) => e.sum));
      } else {
        sums.push(...(await predictBatch(model, x, options.task)));
      }
    } finally {
      x.dispose();
    }
  }
  return options.explain ? { sums, explanations } : { sums };
}

/** Whether a model has SumNet's per-cell read-out. */
function hasCells(model: tf.LayersModel): boolean {
  return model.layers.some((layer) => layer.name === CELL_LOGITS_LAYER);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string" },
      explain: { type: "boolean" },
      backend: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const inputs: InputImages[] = [];
  for (const path of positionals) inputs.push(await readInput(path));
  await initBackend(values.backend);
  const dir = values.model ?? DEFAULT_MODEL_DIR;
  const { model, meta } = await loadCheckpoint(dir);
  const task = checkpointTask(meta.kind, model);
  if (values.explain && !hasCells(model)) {
    throw new Error(`--explain needs a SumNet checkpoint; ${dir} is a ${meta.kind} model`);
  }
  console.log(`Model: ${dir} (${meta.kind})`);
  for (const input of inputs) {
    for (const note of input.notes) console.log(`note: ${note}`);
    const { sums, explanations } = await predictImages(model, input.pixels, {
      task,
      explain: values.explain,
    });
    sums.forEach((sum, i) => {
      const e = explanations?.[i];
      console.log(
        `${input.names[i]}: sum ${sum}` + (e ? ` (p ${e.sumProbability.toFixed(3)})` : ""),
      );
      if (e) { for (const line of formatExplanation(e)) console.log(line); }
    });
  }
}

if (import.meta.main) await runMain("predict", main);
