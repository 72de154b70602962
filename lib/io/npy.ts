/**
 * NumPy `.npy` files, format versions 1.0, 2.0 and 3.0, for the little-endian dtypes the study
 * uses: `uint8` (`|u1`), `int64` (`<i8`), `float32` (`<f4`) and `float64` (`<f8`).
 *
 * The header is a Python dict literal; it is parsed by a small literal-only parser (no eval).
 * Every malformed file gets an error naming the file and the problem, e.g.
 * `Cannot read data/data0.npy: unsupported dtype '>f8'`.
 *
 * @module
 */

import { writeFileAtomic } from "./fsutil.ts";

/** The element types supported in `.npy` files. */
export type NpyDtype = "uint8" | "int64" | "float32" | "float64";

/** The typed array holding the elements of each {@linkcode NpyDtype}. */
export type NpyData = Uint8Array | BigInt64Array | Float32Array | Float64Array;

/**
 * An n-dimensional array in C (row-major) order: `data.length` equals the product of `shape`
 * (1 for a 0-d array) and the typed array matches `dtype`.
 */
export interface NdArray {
  /** Element type. */
  dtype: NpyDtype;
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: number[];
  /** Elements in C order. */
  data: NpyData;
}

/** Options for {@linkcode encodeNpy}. */
export interface EncodeNpyOptions {
  /**
   * Format version to write. By default 1 (like NumPy), or 2 when the header does not fit
   * in the 65,535 bytes version 1 allows. Version 3 only changes the header encoding to UTF-8.
   */
  version?: 1 | 2 | 3;
}

/** The first six bytes of every `.npy` file. */
const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
/** The data section starts at a multiple of this many bytes (NumPy's ARRAY_ALIGN). */
const NPY_ALIGN = 64;
/** Spare header spaces NumPy adds so the first axis can grow in place (GROWTH_AXIS_MAX_DIGITS). */
const GROWTH_AXIS_MAX_DIGITS = 21;
/** Largest header length field of format version 1 (uint16). */
const MAX_V1_HEADER_LENGTH = 0xffff;
/** Header keys NumPy requires, no more and no fewer. */
const HEADER_KEYS = ["descr", "fortran_order", "shape"] as const;
/** Longest header excerpt quoted in an error message. */
const MAX_QUOTED_HEADER = 200;
/**
 * Largest header accepted (NumPy's own reader refuses more than 10,000 bytes by default; its
 * headers are under 200 bytes), so a length field cannot make us read gigabytes as text.
 */
const MAX_HEADER_LENGTH = 1 << 20;
/** Deepest nesting of tuples, lists and dicts in a header (real headers nest 2 deep). */
const MAX_NESTING = 32;

/** Bytes per element of each dtype. */
const ITEM_SIZES: Record<NpyDtype, number> = { uint8: 1, int64: 8, float32: 4, float64: 8 };

/** The descr string written for each dtype (the ones NumPy itself writes). */
const DESCR_OF: Record<NpyDtype, string> = {
  uint8: "|u1",
  int64: "<i8",
  float32: "<f4",
  float64: "<f8",
};

/** Accepted descr strings. */
const DTYPE_OF_DESCR: Record<string, NpyDtype> = {
  "|u1": "uint8",
  "<u1": "uint8",
  "<i8": "int64",
  "<f4": "float32",
  "<f8": "float64",
};

/** Whether this machine stores multi-byte numbers little-endian (typed arrays use host order). */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A parsed Python literal, with the source text it came from (for error messages). */
type PyValue =
  & { source: string }
  & (
    | { kind: "str"; value: string }
    | { kind: "int"; value: bigint }
    | { kind: "bool"; value: boolean }
    | { kind: "none" }
    | { kind: "tuple" | "list"; items: PyValue[] }
    | { kind: "dict"; entries: [PyValue, PyValue][] }
  );

/** Error thrown while parsing a header; the caller adds the file name. */
class ProblemError extends Error {}

/** Recursive-descent parser for the Python literals that appear in `.npy` headers. */
class PyLiteralParser {
  #text: string;
  #pos = 0;
  #depth = 0;

  constructor(text: string) {
    this.#text = text;
  }

  /** Parse the whole text as one literal, allowing surrounding whitespace. */
  parseAll(): PyValue {
    const value = this.#value();
    this.#skipSpace();
    if (this.#pos < this.#text.length) this.#fail("unexpected text after the dict");
    return value;
  }

  #fail(what: string): never {
    throw new ProblemError(`${what} at offset ${this.#pos}`);
  }

  #skipSpace(): void {
    while (this.#pos < this.#text.length && /\s/.test(this.#text[this.#pos])) this.#pos++;
  }

  #peek(): string {
    this.#skipSpace();
    return this.#text[this.#pos] ?? "";
  }

  #expect(char: string): void {
    if (this.#peek() !== char) {
      this.#fail(this.#pos < this.#text.length ? `expected '${char}'` : `missing '${char}'`);
    }
    this.#pos++;
  }

  #value(): PyValue {
    const char = this.#peek();
    const start = this.#pos;
    let node: PyValue;
    if ("{([".includes(char) && char !== "" && this.#depth >= MAX_NESTING) {
      this.#fail(`nested deeper than ${MAX_NESTING} levels`);
    }
    this.#depth += 1;
    if (char === "{") node = this.#dict();
    else if (char === "(") node = this.#tupleOrGroup();
    else if (char === "[") node = this.#list();
    else if (char === "'" || char === '"') node = this.#string();
    else if (/[-+0-9]/.test(char)) node = this.#int();
    else if (/[A-Za-z_]/.test(char)) node = this.#name();
    else if (char === "") this.#fail("unexpected end of header");
    else this.#fail(`unexpected character '${char}'`);
    this.#depth -= 1;
    node.source = this.#text.slice(start, this.#pos);
    return node;
  }

  #dict(): PyValue {
    this.#expect("{");
    const entries: [PyValue, PyValue][] = [];
    while (this.#peek() !== "}") {
      const key = this.#value();
      this.#expect(":");
      const value = this.#value();
      entries.push([key, value]);
      if (this.#peek() !== ",") break;
      this.#pos++;
    }
    this.#expect("}");
    return { kind: "dict", entries, source: "" };
  }

  #tupleOrGroup(): PyValue {
    this.#expect("(");
    const items: PyValue[] = [];
    let sawComma = false;
    while (this.#peek() !== ")") {
      items.push(this.#value());
      if (this.#peek() !== ",") break;
      this.#pos++;
      sawComma = true;
    }
    this.#expect(")");
    // `(x)` is just x in Python; `()` and `(x,)` are tuples.
    if (items.length === 1 && !sawComma) return items[0];
    return { kind: "tuple", items, source: "" };
  }

  #list(): PyValue {
    this.#expect("[");
    const items: PyValue[] = [];
    while (this.#peek() !== "]") {
      items.push(this.#value());
      if (this.#peek() !== ",") break;
      this.#pos++;
    }
    this.#expect("]");
    return { kind: "list", items, source: "" };
  }

  #string(): PyValue {
    const quote = this.#text[this.#pos++];
    let value = "";
    while (true) {
      if (this.#pos >= this.#text.length) this.#fail("unterminated string");
      const char = this.#text[this.#pos++];
      if (char === quote) break;
      if (char === "\n") this.#fail("unterminated string");
      if (char !== "\\") {
        value += char;
        continue;
      }
      const escaped = this.#text[this.#pos++] ?? "";
      const simple: Record<string, string> = {
        "\\": "\\",
        "'": "'",
        '"': '"',
        n: "\n",
        t: "\t",
        r: "\r",
        "0": "\0",
      };
      if (escaped in simple) {
        value += simple[escaped];
      } else if (escaped === "x" || escaped === "u") {
        const digits = escaped === "x" ? 2 : 4;
        const hex = this.#text.slice(this.#pos, this.#pos + digits);
        if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.#fail("bad string escape");
        value += String.fromCharCode(parseInt(hex, 16));
        this.#pos += digits;
      } else {
        value += "\\" + escaped; // Python keeps unknown escapes verbatim.
      }
    }
    return { kind: "str", value, source: "" };
  }

  #int(): PyValue {
    const match = /^[-+]?[0-9]+[lL]?/.exec(this.#text.slice(this.#pos));
    if (match === null) this.#fail("bad number");
    this.#pos += match[0].length;
    if (/^[0-9.eEjJxXoObB_]/.test(this.#text[this.#pos] ?? "")) this.#fail("bad number");
    return { kind: "int", value: BigInt(match[0].replace(/[lL]$/, "")), source: "" };
  }

  #name(): PyValue {
    const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.#text.slice(this.#pos))!;
    this.#pos += match[0].length;
    switch (match[0]) {
      case "True":
        return { kind: "bool", value: true, source: "" };
      case "False":
        return { kind: "bool", value: false, source: "" };
      case "None":
        return { kind: "none", source: "" };
      default:
        this.#pos -= match[0].length;
        this.#fail(`unexpected name '${match[0]}'`);
    }
  }
}

/** `text` shortened for an error message. */
function quoteHeader(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= MAX_QUOTED_HEADER
    ? trimmed
    : trimmed.slice(0, MAX_QUOTED_HEADER) + "...";
}

/** Python repr of a shape tuple: `()`, `(3,)`, `(2, 3)`. */
function shapeRepr(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** Decode header bytes: latin-1 for versions 1 and 2, UTF-8 for version 3. */
function decodeHeader(bytes: Uint8Array, major: number): string {
  if (major === 3) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ProblemError("header is not valid UTF-8");
    }
  }
  // TextDecoder("latin1") is really windows-1252, so map bytes to code points directly.
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

/** Interpret the parsed header dict: dtype, shape, fortran order. */
function interpretHeader(header: PyValue): { dtype: NpyDtype; shape: number[] } {
  if (header.kind !== "dict") {
    throw new ProblemError(`header is not a dict: ${quoteHeader(header.source)}`);
  }
  const fields = new Map<string, PyValue>();
  for (const [key, value] of header.entries) {
    if (key.kind !== "str") throw new ProblemError(`header has a non-string key ${key.source}`);
    if (fields.has(key.value)) throw new ProblemError(`header repeats key '${key.value}'`);
    if (!(HEADER_KEYS as readonly string[]).includes(key.value)) {
      throw new ProblemError(`header has unexpected key '${key.value}'`);
    }
    fields.set(key.value, value);
  }
  for (const key of HEADER_KEYS) {
    if (!fields.has(key)) throw new ProblemError(`header is missing key '${key}'`);
  }
  const descr = fields.get("descr")!;
  const fortranOrder = fields.get("fortran_order")!;
  const shapeValue = fields.get("shape")!;

  const dtype = descr.kind === "str" && Object.hasOwn(DTYPE_OF_DESCR, descr.value)
    ? DTYPE_OF_DESCR[descr.value]
    : undefined;
  if (dtype === undefined) {
    throw new ProblemError(
      `unsupported dtype ${quoteHeader(descr.source)} (supported: ${
        Object.keys(DTYPE_OF_DESCR).map((d) => `'${d}'`).join(", ")
      })`,
    );
  }
  if (shapeValue.kind !== "tuple") {
    throw new ProblemError(`shape must be a tuple of integers, got ${shapeValue.source}`);
  }
  const shape = shapeValue.items.map((item) => {
    if (item.kind !== "int" || item.value < 0n || item.value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ProblemError(
        `shape must be a tuple of non-negative integers, got ${shapeValue.source}`,
      );
    }
    return Number(item.value);
  });
  if (fortranOrder.kind !== "bool") {
    throw new ProblemError(`fortran_order must be True or False, got ${fortranOrder.source}`);
  }
  // With at most one dimension larger than 1, Fortran and C order lay out the same bytes.
  if (fortranOrder.value && shape.filter((d) => d > 1).length > 1) {
    throw new ProblemError(
      `Fortran-order arrays are not supported (shape ${shapeRepr(shape)}); ` +
        "save with numpy.ascontiguousarray() first",
    );
  }
  return { dtype, shape };
}

/**
 * Number of elements of an array with this shape (1 for `[]`).
 *
 * @param shape Dimensions.
 * @returns The product of the dimensions.
 * @throws When a dimension is not a non-negative integer or the product is not a safe integer.
 */
export function elementCount(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new Error(`invalid shape ${shapeRepr(shape)}: dimensions must be integers >= 0`);
    }
    count *= dim;
  }
  if (!Number.isSafeInteger(count)) throw new Error(`shape ${shapeRepr(shape)} is too large`);
  return count;
}

/**
 * Copy or view `count` elements of `dtype` starting at `offset` in `bytes` (host order).
 * A view is returned when the position is aligned for the element type, a copy otherwise.
 */
function typedView(bytes: Uint8Array, offset: number, count: number, dtype: NpyDtype): NpyData {
  const itemSize = ITEM_SIZES[dtype];
  const byteLength = count * itemSize;
  if (dtype === "uint8") return bytes.subarray(offset, offset + byteLength);
  const aligned = (bytes.byteOffset + offset) % itemSize === 0;
  const buffer = aligned
    ? bytes.buffer
    : bytes.slice(offset, offset + byteLength).buffer as ArrayBuffer;
  const start = aligned ? bytes.byteOffset + offset : 0;
  switch (dtype) {
    case "int64":
      return new BigInt64Array(buffer, start, count);
    case "float32":
      return new Float32Array(buffer, start, count);
    case "float64":
      return new Float64Array(buffer, start, count);
  }
}

/** Where an `.npy` file's header ends and what it declares. */
interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Elements the shape holds. */
  count: number;
  /** File offset of the first data byte. */
  dataOffset: number;
}

/**
 * Bytes of the preamble (magic, version, header length) and the header that `prefix` (the
 * file's first bytes) asks for; throws a ProblemError for a bad magic, version or length.
 */
function headerEnd(prefix: Uint8Array, fileSize: number): { major: number; dataOffset: number } {
  if (fileSize === 0) throw new ProblemError("empty file (0 bytes), expected an NPY header");
  const magicPart = prefix.subarray(0, NPY_MAGIC.length);
  if (!magicPart.every((byte, i) => byte === NPY_MAGIC[i])) {
    throw new ProblemError("bad magic: not an NPY file (expected \\x93NUMPY)");
  }
  if (fileSize < NPY_MAGIC.length + 2) {
    throw new ProblemError(`truncated header: file has only ${fileSize} bytes`);
  }
  const major = prefix[6];
  const minor = prefix[7];
  if (![1, 2, 3].includes(major) || minor !== 0) {
    throw new ProblemError(
      `unsupported NPY format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`,
    );
  }
  const lengthFieldSize = major === 1 ? 2 : 4;
  const preambleLength = 8 + lengthFieldSize;
  if (fileSize < preambleLength) {
    throw new ProblemError(
      `truncated header: file has only ${fileSize} bytes, ` +
        `the version ${major}.0 preamble needs ${preambleLength}`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataOffset = preambleLength + headerLength;
  if (fileSize < dataOffset) {
    throw new ProblemError(
      `truncated header: header needs ${dataOffset} bytes, file has only ${fileSize}`,
    );
  }
  if (headerLength > MAX_HEADER_LENGTH) {
    throw new ProblemError(
      `header of ${headerLength} bytes is larger than the ${MAX_HEADER_LENGTH} accepted`,
    );
  }
  return { major, dataOffset };
}

/**
 * Parse the header held in `prefix` (the file's first bytes, at least up to the data) of a file
 * of `fileSize` bytes, and check that the data section has exactly the size the header declares.
 */
function parseHeaderProblem(prefix: Uint8Array, fileSize: number): NpyHeader {
  const { major, dataOffset } = headerEnd(prefix, fileSize);
  const preambleLength = major === 1 ? 10 : 12;
  const headerText = decodeHeader(prefix.subarray(preambleLength, dataOffset), major);
  let header: PyValue;
  try {
    header = new PyLiteralParser(headerText).parseAll();
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new ProblemError(
      `unparseable header dict (${error.message}): ${quoteHeader(headerText)}`,
    );
  }
  const { dtype, shape } = interpretHeader(header);
  let count: number;
  try {
    count = elementCount(shape);
  } catch (error) {
    throw new ProblemError((error as Error).message);
  }
  const expectedBytes = count * ITEM_SIZES[dtype];
  const gotBytes = fileSize - dataOffset;
  if (gotBytes !== expectedBytes) {
    throw new ProblemError(
      `size mismatch: shape ${shapeRepr(shape)} of '${DESCR_OF[dtype]}' needs ` +
        `${expectedBytes} data bytes, got ${gotBytes} (${
          gotBytes < expectedBytes ? "truncated data" : "extra data after the array"
        })`,
    );
  }
  if (!HOST_IS_LITTLE_ENDIAN && ITEM_SIZES[dtype] > 1) {
    throw new ProblemError("big-endian hosts are not supported");
  }
  return { dtype, shape, count, dataOffset };
}

/** Parse `.npy` bytes; throws {@linkcode ProblemError} without the file name. */
function parseNpyProblem(bytes: Uint8Array): NdArray {
  const { dtype, shape, count, dataOffset } = parseHeaderProblem(bytes, bytes.length);
  return { dtype, shape, data: typedView(bytes, dataOffset, count, dtype) };
}

/**
 * Parse the bytes of an `.npy` file (format 1.0, 2.0 or 3.0).
 *
 * The returned `data` shares memory with `bytes` when the data section is suitably aligned
 * (always for files NumPy writes); otherwise it is a copy.
 *
 * @param bytes The whole file.
 * @param name File name used in error messages.
 * @returns The array.
 * @throws Error `Cannot read <name>: <problem>` for bad magic, unsupported versions, truncated
 * or unparseable headers, unsupported dtypes (e.g. `'>f8'`), Fortran order and size mismatches.
 */
export function parseNpy(bytes: Uint8Array, name: string): NdArray {
  try {
    return parseNpyProblem(bytes);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot read ${name}: ${error.message}`);
  }
}

/** Check that `array` is self-consistent; returns the element count or throws a ProblemError. */
function validateArray(array: NdArray): number {
  const expectedType = {
    uint8: Uint8Array,
    int64: BigInt64Array,
    float32: Float32Array,
    float64: Float64Array,
  }[array.dtype];
  if (expectedType === undefined) {
    throw new ProblemError(`unsupported dtype '${array.dtype}'`);
  }
  if (!(array.data instanceof expectedType)) {
    throw new ProblemError(
      `dtype '${array.dtype}' needs a ${expectedType.name}, got ${
        (array.data as object)?.constructor?.name ?? typeof array.data
      }`,
    );
  }
  let count: number;
  try {
    count = elementCount(array.shape);
  } catch (error) {
    throw new ProblemError((error as Error).message);
  }
  if (array.data.length !== count) {
    throw new ProblemError(
      `data has ${array.data.length} elements but shape ${shapeRepr(array.shape)} needs ${count}`,
    );
  }
  return count;
}

/** The padded header bytes (without the preamble) and the version it needs. */
function buildHeader(array: NdArray, requested?: 1 | 2 | 3): { header: Uint8Array; major: number } {
  let text = `{'descr': '${DESCR_OF[array.dtype]}', 'fortran_order': False, ` +
    `'shape': ${shapeRepr(array.shape)}, }`;
  // Like NumPy: spare room so the first dimension can grow in place.
  if (array.shape.length > 0) {
    text += " ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(array.shape[0]).length));
  }
  const headerBody = new TextEncoder().encode(text); // pure ASCII, valid for all versions
  const withNewline = headerBody.length + 1;
  // NumPy pads with 1..64 spaces so the data starts at a multiple of 64 (preamble included).
  const paddingFor = (preambleLength: number) =>
    NPY_ALIGN - ((preambleLength + withNewline) % NPY_ALIGN);
  let major = requested ?? 1;
  if (requested === undefined && withNewline + paddingFor(10) > MAX_V1_HEADER_LENGTH) major = 2;
  const padding = paddingFor(major === 1 ? 10 : 12);
  if (major === 1 && withNewline + padding > MAX_V1_HEADER_LENGTH) {
    throw new ProblemError(
      `header of ${withNewline + padding} bytes does not fit NPY version 1.0 (max 65535)`,
    );
  }
  const header = new Uint8Array(withNewline + padding);
  header.set(headerBody);
  header.fill(0x20, headerBody.length, header.length - 1);
  header[header.length - 1] = 0x0a;
  return { header, major };
}

/** Preamble and header bytes (everything before the data); throws ProblemError. */
function headerBytes(
  array: Pick<NdArray, "dtype" | "shape">,
  options: EncodeNpyOptions,
  dataLength = 0,
): Uint8Array {
  if (options.version !== undefined && ![1, 2, 3].includes(options.version)) {
    throw new ProblemError(`unsupported NPY format version ${options.version}`);
  }
  const { header, major } = buildHeader(array as NdArray, options.version);
  const preambleLength = major === 1 ? 10 : 12;
  const out = new Uint8Array(preambleLength + header.length + dataLength);
  out.set(NPY_MAGIC);
  out[6] = major;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(header, preambleLength);
  return out;
}

/**
 * The bytes of an `.npy` file before its data (preamble and header, exactly as
 * {@linkcode encodeNpy} writes them), for writing a large array in pieces: these bytes, then
 * the elements in C order.
 *
 * @param dtype Element type.
 * @param shape Dimensions.
 * @returns The bytes; the data starts right after them (at a multiple of 64).
 * @throws Error `Cannot encode NPY: <problem>` for an invalid shape.
 */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  try {
    if (!Object.hasOwn(ITEM_SIZES, dtype)) throw new ProblemError(`unsupported dtype '${dtype}'`);
    elementCount(shape);
    return headerBytes({ dtype, shape: [...shape] }, {});
  } catch (error) {
    throw new Error(`Cannot encode NPY: ${(error as Error).message}`);
  }
}

/** Encode; throws ProblemError without a file name. */
function encodeNpyProblem(array: NdArray, options: EncodeNpyOptions): Uint8Array {
  const count = validateArray(array);
  const dataLength = count * ITEM_SIZES[array.dtype];
  const out = headerBytes(array, options, dataLength);
  const dataOffset = out.length - dataLength;
  if (!HOST_IS_LITTLE_ENDIAN && ITEM_SIZES[array.dtype] > 1) {
    throw new ProblemError("big-endian hosts are not supported");
  }
  const data = array.data;
  out.set(new Uint8Array(data.buffer, data.byteOffset, dataLength), dataOffset);
  return out;
}

/**
 * Encode an array as `.npy` bytes, byte-for-byte like NumPy's `numpy.save` (format 1.0, or 2.0
 * when the header exceeds 65,535 bytes; data starts at a multiple of 64 bytes; the header
 * ends in `'\n'`).
 *
 * @param array The array; `data.length` must match `shape` and the typed array must match
 * `dtype`.
 * @param options `version` forces a format version.
 * @returns The file bytes.
 * @throws Error `Cannot encode NPY: <problem>` for inconsistent arrays.
 */
export function encodeNpy(array: NdArray, options: EncodeNpyOptions = {}): Uint8Array {
  try {
    return encodeNpyProblem(array, options);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot encode NPY: ${error.message}`);
  }
}

/**
 * Read and parse an `.npy` file.
 *
 * @param path File path.
 * @returns The array (see {@linkcode parseNpy}).
 * @throws Error `Cannot read <path>: <problem>` when the file is missing or malformed.
 */
export async function readNpy(path: string): Promise<NdArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseNpy(bytes, path);
}

/** Bytes read from the start of a file to find its header (most headers fit in 128). */
const HEADER_PROBE = 4096;

/**
 * An open `.npy` file whose data is read on demand, a block of rows at a time: memory stays
 * bounded however large the file is. Made by {@linkcode openNpy}; close it when done.
 */
export interface NpyFile {
  /** The path, as given. */
  readonly path: string;
  readonly dtype: NpyDtype;
  /** Dimensions, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Rows along the first axis (1 for a scalar). */
  readonly rows: number;
  /** Elements per row (the product of the other dimensions). */
  readonly rowElements: number;
  /**
   * Rows `start .. start + count - 1` as a new typed array (C order).
   *
   * @throws RangeError when the rows are not inside the array
   */
  readRows(start: number, count: number): NpyData;
  /** Close the file. */
  close(): void;
}

/** Read exactly `length` bytes at `offset` of an open file (synchronously). */
function readAt(file: Deno.FsFile, offset: number, length: number, path: string): Uint8Array {
  const out = new Uint8Array(length);
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = file.readSync(out.subarray(done));
    if (n === null || n === 0) {
      throw new Error(`Cannot read ${path}: the file ended after ${offset + done} bytes`);
    }
    done += n;
  }
  return out;
}

/**
 * Open an `.npy` file and check its header against its size, without reading the data: the
 * rows are read on demand by {@linkcode NpyFile.readRows}. For files of any size (e.g. 100,000
 * images, 672 MB) in bounded memory.
 *
 * @param path File path.
 * @returns The open file; call `close()` when done.
 * @throws Error `Cannot read <path>: <problem>` when the file is missing or malformed (the
 * same problems and messages as {@linkcode readNpy}).
 */
export async function openNpy(path: string): Promise<NpyFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const fileSize = (await file.stat()).size;
    let prefix = readAt(file, 0, Math.min(HEADER_PROBE, fileSize), path);
    let header: NpyHeader;
    try {
      const { dataOffset } = headerEnd(prefix, fileSize);
      if (dataOffset > prefix.length) prefix = readAt(file, 0, dataOffset, path);
      header = parseHeaderProblem(prefix, fileSize);
    } catch (error) {
      if (!(error instanceof ProblemError)) throw error;
      throw new Error(`Cannot read ${path}: ${error.message}`);
    }
    const { dtype, shape, dataOffset } = header;
    const rows = shape.length ? shape[0] : 1;
    const rowElements = shape.length ? elementCount(shape.slice(1)) : 1;
    const itemSize = ITEM_SIZES[dtype];
    return {
      path,
      dtype,
      shape,
      rows,
      rowElements,
      readRows(start: number, count: number): NpyData {
        if (
          !Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 ||
          start + count > rows
        ) {
          throw new RangeError(
            `${path}: rows ${start}..${start + count - 1} outside 0..${rows - 1}`,
          );
        }
        const bytes = readAt(
          file,
          dataOffset + start * rowElements * itemSize,
          count * rowElements * itemSize,
          path,
        );
        return typedView(bytes, 0, count * rowElements, dtype);
      },
      close: () => file.close(),
    };
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Write an array as an `.npy` file atomically (temp file + rename).
 *
 * @param path Destination; its directory must exist.
 * @param array The array.
 * @param options Passed to {@linkcode encodeNpy}.
 * @throws Error `Cannot write <path>: <problem>` for inconsistent arrays or I/O failures.
 */
export async function writeNpy(
  path: string,
  array: NdArray,
  options: EncodeNpyOptions = {},
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = encodeNpyProblem(array, options);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    throw new Error(`Cannot write ${path}: ${error.message}`);
  }
  await writeFileAtomic(path, bytes);
}

/**
 * The elements of any supported array as a Float32Array (e.g. labels stored as uint8, int64 or
 * floats). Returns `array.data` itself when it already is float32.
 *
 * @param array The array.
 * @returns The values, converted to float32.
 */
export function asFloat32(array: NdArray): Float32Array {
  const data = array.data;
  if (data instanceof Float32Array) return data;
  const out = new Float32Array(data.length);
  if (data instanceof BigInt64Array) {
    for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  } else {
    out.set(data);
  }
  return out;
}

/**
 * The elements of any supported array as an Int32Array, for integer data such as labels stored
 * as uint8, int64 or whole-number floats.
 *
 * @param array The array.
 * @param name File name used in error messages.
 * @returns The values as int32.
 * @throws Error `Cannot read <name>: ...` when a value is not an integer in the int32 range.
 */
export function asInt32(array: NdArray, name: string): Int32Array {
  const data = array.data;
  const out = new Int32Array(data.length);
  if (data instanceof Uint8Array) {
    out.set(data);
    return out;
  }
  for (let i = 0; i < data.length; i++) {
    const value = typeof data[i] === "bigint" ? Number(data[i]) : data[i] as number;
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new Error(
        `Cannot read ${name}: element ${i} is ${String(data[i])}, not an int32 integer`,
      );
    }
    out[i] = value;
  }
  return out;
}
