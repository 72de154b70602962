/**
 * Image files as model input, for `deno task predict`: a PNG converted by `image_input.ts`, or an
 * `.npy` stack of course-format images read a batch at a time.
 *
 * @module
 */
import { basename, extname } from "node:path";
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../constants.ts";
import { type NpyFile, openNpy } from "../io/npy.ts";
import { pngToModelImage } from "./image_input.ts";

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
