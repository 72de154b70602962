/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header naming each
 * tensor's dtype, shape and byte range (relative to the data section that follows), then the raw
 * little-endian tensor bytes. F32, F16 and BF16 tensors are read into float32; other dtypes are
 * rejected with a clear error. `__metadata__` is ignored.
 *
 * @module
 */

import { writeFileAtomic } from "./fsutil.ts";

/** Bytes of the little-endian u64 header length at the start of every file. */
const LENGTH_BYTES = 8;
/** Largest header accepted (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per element of the dtypes this module converts to float32. */
const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;
/** Other dtypes of the format, named in errors so that they read as "unsupported", not "unknown". */
const KNOWN_DTYPES = new Set([
  "BOOL",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "I16",
  "U16",
  "I32",
  "U32",
  "F64",
  "I64",
  "U64",
]);

/** A dtype this module can read and write. */
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** One tensor as read: its stored dtype, its shape and its values converted to float32. */
export interface SafeTensor {
  /** Stored dtype (`F32`, `F16` or `BF16`). */
  dtype: string;
  /** Shape, row-major (C order). */
  shape: number[];
  /** Values in row-major order, converted to float32. */
  data: Float32Array;
}

/** One tensor to write: `data` is rounded to `dtype` (round to nearest even) when encoding. */
export interface SafeTensorInput {
  /** Dtype to store. */
  dtype: SafetensorsDtype;
  /** Shape, row-major (C order). */
  shape: number[];
  /** Values in row-major order; its length must equal the product of `shape`. */
  data: Float32Array;
}

/** One header entry after validation. */
export interface SafetensorsEntry {
  /** Tensor name. */
  name: string;
  /** Stored dtype. */
  dtype: SafetensorsDtype;
  /** Shape. */
  shape: number[];
  /** Byte range [begin, end) within the data section. */
  begin: number;
  end: number;
}

/** A validated header: its entries and where the data section starts in the file. */
export interface SafetensorsHeader {
  /** Entries in header order. */
  entries: SafetensorsEntry[];
  /** File offset of the data section (8 + header length). */
  dataStart: number;
}

/** Options for {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /** Read only tensors whose name passes this test; the others are validated but not read. */
  include?: (name: string) => boolean;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Product of a shape's dimensions (1 for a scalar). */
function elementCount(shape: number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/** Read the header length from the first 8 bytes, checking it against the file size. */
function readHeaderLength(prefix: Uint8Array, fileSize: number, name: string): number {
  if (fileSize < LENGTH_BYTES) {
    throw new Error(
      `Cannot read ${name}: file too short (${fileSize} bytes; a safetensors file starts ` +
        `with an 8-byte header length)`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_BYTES);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(fileSize - LENGTH_BYTES)) {
    throw new Error(
      `Cannot read ${name}: header length ${length} goes beyond the end of the file ` +
        `(${fileSize} bytes); not a safetensors file or truncated`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`Cannot read ${name}: header length ${length} exceeds ${MAX_HEADER_BYTES}`);
  }
  return Number(length);
}

/** Longest JSON excerpt quoted in an error message. */
const MAX_QUOTED_JSON = 80;

/** A header value for an error message: JSON, cut short, or `(missing)`. */
function quoteJson(value: unknown): string {
  if (value === undefined) return "(missing)";
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    return "(nested too deep)"; // JSON.stringify recurses
  }
  return text.length > MAX_QUOTED_JSON ? text.slice(0, MAX_QUOTED_JSON) + "..." : text;
}

/** Whether `value` is a non-negative safe integer. */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Validate a header's JSON against the size of the data section.
 *
 * @param headerBytes The JSON bytes (UTF-8, possibly space-padded).
 * @param dataLength Bytes in the data section.
 * @param name File name for errors.
 * @returns The entries, in header order.
 */
function parseHeaderJson(
  headerBytes: Uint8Array,
  dataLength: number,
  name: string,
): SafetensorsEntry[] {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot read ${name}: header is not valid JSON (${why})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`Cannot read ${name}: header is not a JSON object`);
  }
  const entries: SafetensorsEntry[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") continue;
    const where = `Cannot read ${name}: tensor '${key}'`;
    if (typeof value !== "object" || value === null) {
      throw new Error(`${where} has no dtype/shape/data_offsets object`);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== "string") throw new Error(`${where} has no dtype`);
    if (!Object.hasOwn(DTYPE_BYTES, dtype)) {
      const kind = KNOWN_DTYPES.has(dtype) ? "unsupported" : "unknown";
      throw new Error(`${where} has ${kind} dtype '${dtype}' (supported: F32, F16, BF16)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new Error(`${where} has an invalid shape ${quoteJson(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new Error(`${where} has invalid data_offsets ${quoteJson(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataLength) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] out of range (data section is ` +
          `${dataLength} bytes)`,
      );
    }
    const bytesPerElement = DTYPE_BYTES[dtype as SafetensorsDtype];
    const expected = elementCount(shape) * bytesPerElement;
    if (end - begin !== expected) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ` +
          `[${shape.join(", ")}] x ${dtype} needs ${expected}`,
      );
    }
    entries.push({ name: key, dtype: dtype as SafetensorsDtype, shape: [...shape], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    const current = sorted[i];
    if (current.begin < previous.end) {
      throw new Error(
        `Cannot read ${name}: tensors '${previous.name}' [${previous.begin}, ${previous.end}] ` +
          `and '${current.name}' [${current.begin}, ${current.end}] overlap`,
      );
    }
  }
  return entries;
}

/** Convert an IEEE 754 half-precision bit pattern to a number. */
function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Scratch views for float32 <-> bit pattern conversions. */
const SCRATCH_F32 = new Float32Array(1);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer);

/** Round a float32 value to the nearest half-precision bit pattern (ties to even). */
function floatToHalf(value: number): number {
  SCRATCH_F32[0] = value;
  const bits = SCRATCH_U32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let half = full >>> shift;
    const remainder = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** Round a float32 value to the nearest bfloat16 bit pattern (ties to even; NaN stays NaN). */
function floatToBfloat16(value: number): number {
  SCRATCH_F32[0] = value;
  const bits = SCRATCH_U32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff)) return (bits >>> 16) | 0x40;
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

let halfTable: Float32Array | undefined;

/** All 65,536 half-precision values, built on first use. */
function halfValues(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfToFloat(bits);
  }
  return halfTable;
}

/** Decode one tensor's bytes (exactly its byte range) to float32. */
function decodeTensor(bytes: Uint8Array, dtype: SafetensorsDtype, count: number): Float32Array {
  if (dtype === "F32") {
    if (HOST_IS_LITTLE_ENDIAN) return new Float32Array(bytes.slice().buffer, 0, count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Float32Array.from({ length: count }, (_, i) => view.getFloat32(i * 4, true));
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (dtype === "F16") {
    const table = halfValues();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)];
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  }
  return out;
}

/**
 * Validate the header of a safetensors file held (at least its first 8 + header bytes) in
 * `prefix`.
 *
 * @param prefix The file's first bytes; must contain the whole header.
 * @param fileSize Total file size in bytes.
 * @param name File name for errors.
 * @returns The validated header.
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileSize: number,
  name: string,
): SafetensorsHeader {
  const headerLength = readHeaderLength(prefix, fileSize, name);
  const dataStart = LENGTH_BYTES + headerLength;
  if (prefix.length < dataStart) {
    throw new Error(`Cannot read ${name}: header is truncated`);
  }
  const entries = parseHeaderJson(
    prefix.subarray(LENGTH_BYTES, dataStart),
    fileSize - dataStart,
    name,
  );
  return { entries, dataStart };
}

/**
 * Parse a whole safetensors file held in memory.
 *
 * @param bytes The file's bytes.
 * @param name File name (or path) used in error messages.
 * @returns Tensors by name, in header order, values converted to float32.
 */
export function parseSafetensors(bytes: Uint8Array, name: string): Map<string, SafeTensor> {
  const { entries, dataStart } = parseSafetensorsHeader(bytes, bytes.length, name);
  const tensors = new Map<string, SafeTensor>();
  for (const entry of entries) {
    const slice = bytes.subarray(dataStart + entry.begin, dataStart + entry.end);
    const data = decodeTensor(slice, entry.dtype, elementCount(entry.shape));
    tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data });
  }
  return tensors;
}

/**
 * Encode tensors as a safetensors file (header padded with spaces to a multiple of 8 bytes,
 * tensors stored in the order given). F16 and BF16 round to nearest even.
 *
 * @param tensors Tensors by name.
 * @param metadata Optional string-to-string `__metadata__`.
 * @returns The file's bytes.
 */
export function encodeSafetensors(
  tensors: Record<string, SafeTensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    if (!Object.hasOwn(DTYPE_BYTES, tensor.dtype)) {
      throw new Error(`Cannot encode tensor '${name}': unsupported dtype '${tensor.dtype}'`);
    }
    if (!tensor.shape.every(isCount)) {
      throw new Error(`Cannot encode tensor '${name}': invalid shape [${tensor.shape}]`);
    }
    const count = elementCount(tensor.shape);
    if (tensor.data.length !== count) {
      throw new Error(
        `Cannot encode tensor '${name}': shape [${tensor.shape.join(", ")}] needs ${count} ` +
          `values, got ${tensor.data.length}`,
      );
    }
    const size = count * DTYPE_BYTES[tensor.dtype];
    header[name] = {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + size],
    };
    offset += size;
  }
  let json = JSON.stringify(header);
  const rawLength = new TextEncoder().encode(json).length;
  json += " ".repeat((8 - (rawLength % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(LENGTH_BYTES + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, LENGTH_BYTES);
  let position = LENGTH_BYTES + headerBytes.length;
  for (const tensor of Object.values(tensors)) {
    const count = tensor.data.length;
    if (tensor.dtype === "F32" && HOST_IS_LITTLE_ENDIAN) {
      const data = tensor.data;
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), position);
      position += count * 4;
    } else if (tensor.dtype === "F32") {
      for (let i = 0; i < count; i++) view.setFloat32(position + i * 4, tensor.data[i], true);
      position += count * 4;
    } else {
      const round = tensor.dtype === "F16" ? floatToHalf : floatToBfloat16;
      for (let i = 0; i < count; i++) view.setUint16(position + i * 2, round(tensor.data[i]), true);
      position += count * 2;
    }
  }
  return out;
}

/** Read exactly `length` bytes at `offset` of an open file. */
async function readExactly(
  file: Deno.FsFile,
  offset: number,
  length: number,
  name: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(out.subarray(done));
    if (n === null) throw new Error(`Cannot read ${name}: unexpected end of file`);
    done += n;
  }
  return out;
}

/**
 * Read a safetensors file from disk. With `include`, only the selected tensors' bytes are read
 * (the header is still validated in full), so a large checkpoint can be filtered cheaply.
 *
 * @param path File to read.
 * @param options Optional tensor filter.
 * @returns Tensors by name, values converted to float32.
 */
export async function readSafetensors(
  path: string,
  options: ReadSafetensorsOptions = {},
): Promise<Map<string, SafeTensor>> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "file not found"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new Error(`Cannot read ${path}: ${why}`, { cause: error });
  }
  try {
    const fileSize = (await file.stat()).size;
    if (!options.include) {
      const bytes = await readExactly(file, 0, fileSize, path);
      return parseSafetensors(bytes, path);
    }
    const lengthBytes = await readExactly(file, 0, Math.min(LENGTH_BYTES, fileSize), path);
    const headerLength = readHeaderLength(lengthBytes, fileSize, path);
    const prefix = await readExactly(file, 0, LENGTH_BYTES + headerLength, path);
    const { entries, dataStart } = parseSafetensorsHeader(prefix, fileSize, path);
    const tensors = new Map<string, SafeTensor>();
    for (const entry of entries) {
      if (!options.include(entry.name)) continue;
      const bytes = await readExactly(file, dataStart + entry.begin, entry.end - entry.begin, path);
      const data = decodeTensor(bytes, entry.dtype, elementCount(entry.shape));
      tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data });
    }
    return tensors;
  } finally {
    file.close();
  }
}

/**
 * Encode tensors and write them to `path` atomically.
 *
 * @param path Destination file; its directory must exist.
 * @param tensors Tensors by name.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, SafeTensorInput>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors));
}
