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
import { initBackend, parseBackendName } from "../lib/runtime/backend.ts";
import { checkImageModel, checkpointTask, loadCheckpoint } from "../lib/training/checkpoint.ts";
import { BATCH_SIZE, IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../lib/constants.ts";
import type { Task } from "../lib/models/registry.ts";
import { type NpyFile, openNpy } from "../lib/io/npy.ts";
import { pngToModelImage } from "../lib/data/image_input.ts";
import { CELL_LOGITS_LAYER, explainBatch, type Explanation } from "../lib/models/sumnet/mod.ts";
import { predictBatch } from "../lib/training/train.ts";
import { parseIntFlag, runMain } from "../lib/cli/args.ts";

export { resizeGray } from "../lib/data/image_input.ts";

/** Checkpoint used when `--model` is not given. */
export const DEFAULT_MODEL_DIR = "trained_models/sumnet";
const USAGE = `Usage: deno task predict <image.png|images.npy> [more files] [options]

  --model DIR     checkpoint directory (default ${DEFAULT_MODEL_DIR})
  --explain       also print the digits the model reads (SumNet checkpoints)
  --batch-size N  images per forward pass (default ${BATCH_SIZE})
  --backend NAME  auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
`;

/**
 * One input file, checked and ready for the model: a PNG read and converted, or an `.npy` file
 * whose header was checked and whose images are read a batch at a time (bounded memory for files
 * of any size).
 */
export interface InputImages {
  /** Number of images. */
  count: number;
  /** Label of image `i` for output lines, e.g. `digits.png` or `images.npy[3]`. */
  nameOf(i: number): string;
  /** Images `start .. start + count - 1`: `[count, 40, 168]` uint8, white digits on black. */
  read(start: number, count: number): Promise<Uint8Array>;
  /** What was done to the input (conversions), one line each. */
  notes: string[];
  /** Release the file (npy inputs keep it open while they are read). */
  close(): void;
}

/** An input held in memory (a converted PNG). */
function inMemoryInput(name: string, pixels: Uint8Array, notes: string[]): InputImages {
  return {
    count: pixels.length / IMAGE_SIZE,
    nameOf: () => name,
    read: (start, count) =>
      Promise.resolve(pixels.subarray(start * IMAGE_SIZE, (start + count) * IMAGE_SIZE)),
    notes,
    close: () => {},
  };
}

/**
 * Reads a PNG and converts it to one 40 x 168 white-on-black image.
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
  return inMemoryInput(basename(path), pixels, notes);
}

/**
 * Opens an `.npy` file of images: uint8 `[N, 40, 168]` (or one `[40, 168]` image). Only the
 * header is read now; the images are read when asked for, and the file is open only meanwhile.
 *
 * @param path the `.npy` file
 * @returns the images, named `file.npy[i]`
 * @throws Error naming the file when it is malformed or its dtype or shape is not that
 */
export async function readNpyInput(path: string): Promise<InputImages> {
  const file = await openNpy(path);
  file.close();
  const { shape, dtype } = file;
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
  let open: NpyFile | undefined;
  return {
    count,
    nameOf: (i) => `${name}[${i}]`,
    async read(start, n) {
      open ??= await openNpy(path);
      // A single [40, 168] image: its 40 rows are the whole image.
      if (single) return open.readRows(0, IMAGE_HEIGHT) as Uint8Array;
      return open.readRows(start, n) as Uint8Array;
    },
    notes: [],
    close() {
      open?.close();
      open = undefined;
    },
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

/** An image waiting for its batch: which input it comes from and its index there. */
interface Queued {
  input: number;
  index: number;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string" },
      explain: { type: "boolean" },
      backend: { type: "string" },
      "batch-size": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const batchSize = parseIntFlag(values["batch-size"], "batch-size") ?? BATCH_SIZE;
  const backend = values.backend === undefined ? undefined : parseBackendName(values.backend);
  // Every input is checked before the model loads: a bad file fails at once, by name.
  const inputs: InputImages[] = [];
  for (const path of positionals) inputs.push(await readInput(path));
  await initBackend(backend);
  const dir = values.model ?? DEFAULT_MODEL_DIR;
  const { model, meta } = await loadCheckpoint(dir);
  checkImageModel(model, dir);
  const task = checkpointTask(meta.kind, model);
  if (values.explain && !hasCells(model)) {
    throw new Error(`--explain needs a SumNet checkpoint; ${dir} is a ${meta.kind} model`);
  }
  console.log(`Model: ${dir} (${meta.kind})`);
  // Images of consecutive inputs share batches (1,000 PNG files make 16 forward passes, not
  // 1,000); an .npy file is read a batch at a time. Lines come out in input order.
  const pixels = new Uint8Array(batchSize * IMAGE_SIZE);
  let queued: Queued[] = [];
  let notesShown = -1;
  const flush = async () => {
    if (queued.length === 0) return;
    const { sums, explanations } = await predictImages(
      model,
      pixels.subarray(0, queued.length * IMAGE_SIZE),
      { task, explain: values.explain, batchSize },
    );
    // One write per batch: 100,000 console.log calls cost more than the model.
    const lines: string[] = [];
    queued.forEach(({ input, index }, i) => {
      if (input > notesShown) {
        for (let k = notesShown + 1; k <= input; k++) {
          for (const note of inputs[k].notes) lines.push(`note: ${note}`);
        }
        notesShown = input;
      }
      const e = explanations?.[i];
      lines.push(
        `${inputs[input].nameOf(index)}: sum ${sums[i]}` +
          (e ? ` (p ${e.sumProbability.toFixed(3)})` : ""),
      );
      if (e) lines.push(...formatExplanation(e));
    });
    console.log(lines.join("\n"));
    queued = [];
  };
  for (const [k, input] of inputs.entries()) {
    try {
      for (let start = 0; start < input.count;) {
        const n = Math.min(batchSize - queued.length, input.count - start);
        pixels.set(await input.read(start, n), queued.length * IMAGE_SIZE);
        for (let i = 0; i < n; i++) queued.push({ input: k, index: start + i });
        start += n;
        if (queued.length === batchSize) await flush();
      }
    } finally {
      input.close();
    }
  }
  await flush();
}

if (import.meta.main) await runMain("predict", main);
