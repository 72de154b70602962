/**
 * Seeded fuzzing of every reader: NPY, IDX, PNG, safetensors, checkpoints (model.json,
 * weights.bin, digitsum.json, optimizer files), the sweep's JSON records, and the CLIs' image and
 * label pairs. Valid files (real ones where the repository has them: NumPy-written fixtures,
 * MNIST's IDX files, the VGG safetensors fixture, the shipped SumNet checkpoint, a real sweep)
 * are truncated at every boundary, flipped, given extreme header fields and replaced by random
 * bytes. Every case must end in a result or one clear error naming the file (tests/fuzz_support.ts).
 *
 * `DIGITSUM_FUZZ=long deno test -A tests/fuzz_test.ts` runs 20 times as many random cases;
 * `DIGITSUM_FUZZ_SEED=N` draws other ones.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import { saveCheckpoint } from "../lib/training/checkpoint.ts";
import { ensureDataset, mnistDir } from "../lib/data/generate.ts";
import { encodeIdx, type IdxArray } from "../lib/io/idx.ts";
import { encodeNpy } from "../lib/io/npy.ts";
import { encodePng } from "../lib/io/png.ts";
import { encodeSafetensors } from "../lib/io/safetensors.ts";
import { seedEverything } from "../lib/runtime/seed.ts";
import { TorchAdam, trainableVariables } from "../lib/training/train.ts";
import {
  caseCount,
  concat,
  EXTREME_U32,
  type FuzzCase,
  FuzzRandom,
  mutateBytes,
  mutateJson,
  randomFile,
  runFuzz,
  truncationLengths,
} from "./fuzz_support.ts";
import { resolveConfig } from "../lib/sweep/config.ts";
import { runSweep } from "../lib/sweep/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURES = join(ROOT, "tests", "fixtures");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Cases of one file: truncations at `boundaries`, then `count` random byte mutations. */
function* byteCases(
  target: string,
  seeds: ReadonlyArray<{ name: string; bytes: Uint8Array; boundaries: number[] }>,
  rng: FuzzRandom,
  count: number,
  magic: Uint8Array,
): Generator<FuzzCase> {
  for (const seed of seeds) {
    yield { label: `${seed.name} as is`, files: { [target]: seed.bytes }, target };
    for (const length of truncationLengths(seed.bytes.length, seed.boundaries)) {
      yield {
        label: `${seed.name} truncated to ${length} bytes`,
        files: { [target]: seed.bytes.subarray(0, length) },
        target,
      };
    }
  }
  for (let i = 0; i < count; i++) {
    if (i % 10 === 9) {
      const { label, bytes } = randomFile(rng, magic);
      yield { label, files: { [target]: bytes }, target };
      continue;
    }
    const seed = rng.pick(seeds);
    const { label, bytes } = mutateBytes(seed.bytes, rng);
    yield { label: `${seed.name}: ${label}`, files: { [target]: bytes }, target };
  }
}

/** Every byte offset up to `limit`, and the given offsets. */
function everyByte(limit: number, more: number[] = []): number[] {
  return [...Array.from({ length: limit }, (_, i) => i), ...more];
}

// ---------------------------------------------------------------------------------------------
// NPY

/** An `.npy` file from a header dict text and data bytes (version 1 or 2 preamble). */
function npyFile(header: string, data: Uint8Array, major = 1): Uint8Array {
  const text = encoder.encode(header + "\n");
  const preamble = new Uint8Array(major === 1 ? 10 : 12);
  preamble.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(preamble.buffer);
  if (major === 1) view.setUint16(8, Math.min(text.length, 0xffff), true);
  else view.setUint32(8, text.length, true);
  return concat(preamble, text, data);
}

/** Header dicts with extreme fields: dtypes, shapes, orders, keys and nesting. */
function* npyFieldCases(rng: FuzzRandom, count: number): Generator<FuzzCase> {
  const target = "field.npy";
  const descrs = [
    "|u1",
    "<u1",
    "<i8",
    "<f4",
    "<f8",
    ">f8",
    ">i8",
    "<f2",
    "|b1",
    "<U10",
    "|O",
    "<c16",
    "",
    "toString",
    "constructor",
    "__proto__",
    "u1",
    "<i4",
  ];
  const shapes = [
    "()",
    "(0,)",
    "(3,)",
    "(2, 3)",
    "(0, 40, 168)",
    "(1, 40, 168)",
    "(9223372036854775808,)",
    "(9007199254740993,)",
    "(18446744073709551616, 0)",
    "(4294967296, 4294967296)",
    "(-1,)",
    "(-1, -4)",
    "(nan,)",
    "(1e3,)",
    "(3.0,)",
    "((),)",
    "(None,)",
    "(True,)",
    "('a',)",
    "[2, 3]",
    "{}",
    "(" + "1, ".repeat(5000) + ")",
    "(".repeat(5000) + ")".repeat(5000),
    "(".repeat(100_000),
  ];
  const orders = ["False", "True", "0", "1", "None", "'False'"];
  const dataSizes = [0, 1, 3, 6, 24, 48, 6720];
  for (let i = 0; i < count; i++) {
    const descr = rng.pick(descrs);
    const shape = rng.pick(shapes);
    const order = rng.pick(orders);
    let header = `{'descr': '${descr}', 'fortran_order': ${order}, 'shape': ${shape}, }`;
    const variant = rng.below(12);
    if (variant === 0) header = header.replace("'descr'", "'descr', 'extra': 1, 'descr2'");
    if (variant === 1) header = header.replace(`'shape': ${shape}, `, "");
    if (variant === 2) {
      header = `{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}`;
    }
    if (variant === 3) {
      header = rng.pick(["[1]", "1", "None", "'x'", "{", "{'descr': '<f4'", "{1: 2}"]);
    }
    if (variant === 4) header = header.replace(/'/g, '"');
    if (variant === 5) header = header.replace("'descr'", "'d\\x65scr'");
    if (variant === 6) header = header + "\u00ff\u0100";
    const data = rng.chance(0.5) ? rng.bytes(rng.pick(dataSizes)) : new Uint8Array(24);
    const major = rng.chance(0.8) ? 1 : rng.pick([2, 3]);
    let bytes = npyFile(header, data, major);
    const lengthCase = rng.below(10);
    if (lengthCase === 0) {
      // The header length field says something else.
      const view = new DataView(bytes.buffer);
      const value = rng.pick([0, 1, bytes.length, 0xffff, 0x7fffffff, 0xffffffff]);
      if (major === 1) view.setUint16(8, value & 0xffff, true);
      else view.setUint32(8, value >>> 0, true);
    } else if (lengthCase === 1) {
      bytes = bytes.slice();
      bytes[6] = rng.pick([0, 4, 255]);
      bytes[7] = rng.pick([0, 1, 255]);
    }
    yield {
      label: `header ${header.slice(0, 80)} (v${major}, ${data.length} data bytes)`,
      files: { [target]: bytes },
      target,
    };
  }
}

Deno.test("fuzz: NPY files end in an array or one clear error naming the file", async () => {
  const rng = new FuzzRandom("npy");
  const seeds = [];
  for await (const entry of Deno.readDir(FIXTURES)) {
    if (!entry.name.endsWith(".npy")) continue;
    const bytes = await Deno.readFile(join(FIXTURES, entry.name));
    seeds.push({ name: entry.name, bytes, boundaries: everyByte(bytes.length) });
  }
  seeds.sort((a, b) => a.name.localeCompare(b.name));
  // Two 40 x 168 images as the course files hold them: every header byte, every row end.
  const images = encodeNpy({
    dtype: "uint8",
    shape: [2, 40, 168],
    data: Uint8Array.from({ length: 2 * 6720 }, (_, i) => (i * 7) % 256),
  });
  seeds.push({
    name: "images [2, 40, 168]",
    bytes: images,
    boundaries: everyByte(200, Array.from({ length: 81 }, (_, r) => 128 + 168 * r)),
  });
  const stats = await runFuzz(
    "npy",
    (function* () {
      yield* byteCases("case.npy", seeds, rng, caseCount(2000), seeds[0].bytes.subarray(0, 8));
      yield* npyFieldCases(rng, caseCount(1500));
    })(),
  );
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// IDX

/** Real MNIST IDX files, cut to a few items with their count field set to match. */
async function idxSeeds(): Promise<
  Array<{ name: string; bytes: Uint8Array; boundaries: number[] }>
> {
  const dir = await mnistDir();
  const labels = await Deno.readFile(join(dir, "t10k-labels-idx1-ubyte"));
  const images = await Deno.readFile(join(dir, "t10k-images-idx3-ubyte"));
  const realLabels = labels.slice(0, 8 + 100);
  new DataView(realLabels.buffer).setUint32(4, 100);
  const realImages = images.slice(0, 16 + 3 * 784);
  new DataView(realImages.buffer).setUint32(4, 3);
  const small = (array: IdxArray) => encodeIdx(array);
  const made: Array<[string, Uint8Array]> = [
    ["MNIST labels (100)", realLabels],
    ["MNIST images (3)", realImages],
    [
      "int8 [2, 3]",
      small({ dtype: "int8", shape: [2, 3], data: new Int8Array([1, -2, 3, -4, 5, -6]) }),
    ],
    ["int16 [4]", small({ dtype: "int16", shape: [4], data: new Int16Array([1, -300, 3, 7]) })],
    [
      "int32 [2, 2]",
      small({ dtype: "int32", shape: [2, 2], data: new Int32Array([1, -2, 3e9, 4]) }),
    ],
    [
      "float32 [3]",
      small({ dtype: "float32", shape: [3], data: new Float32Array([0.5, -1, 1e30]) }),
    ],
    ["float64 [2]", small({ dtype: "float64", shape: [2], data: new Float64Array([Math.PI, -0]) })],
    ["uint8 scalar", small({ dtype: "uint8", shape: [], data: new Uint8Array([7]) })],
    ["uint8 [0, 28, 28]", small({ dtype: "uint8", shape: [0, 28, 28], data: new Uint8Array() })],
  ];
  const seeds = made.map(([name, bytes]) => ({
    name,
    bytes,
    boundaries: everyByte(Math.min(bytes.length, 64), [bytes.length - 1]),
  }));
  for (const [name, bytes] of made.slice(0, 4)) {
    const gz = new Uint8Array(gzipSync(bytes));
    seeds.push({ name: `${name}.gz`, bytes: gz, boundaries: everyByte(gz.length) });
  }
  return seeds;
}

/** IDX headers with every type code, extreme dimension counts and sizes, and gzip bombs. */
function* idxFieldCases(rng: FuzzRandom, count: number): Generator<FuzzCase> {
  const target = "field.idx";
  for (let code = 0; code < 256; code++) {
    const bytes = concat(new Uint8Array([0, 0, code, 1, 0, 0, 0, 2]), new Uint8Array(16));
    yield { label: `type code ${code}`, files: { [target]: bytes }, target };
  }
  for (let i = 0; i < count; i++) {
    const ndim = rng.pick([0, 1, 2, 3, 4, 8, 100, 255]);
    const header = new Uint8Array(4 + 4 * ndim);
    header.set([0, 0, rng.pick([0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e]), ndim]);
    const view = new DataView(header.buffer);
    const dims: number[] = [];
    for (let d = 0; d < ndim; d++) {
      const dim = rng.chance(0.6) ? rng.pick([0, 1, 2, 3, 28]) : rng.pick(EXTREME_U32);
      dims.push(dim);
      view.setUint32(4 + 4 * d, dim);
    }
    let bytes = concat(header, rng.bytes(rng.pick([0, 1, 4, 16, 784, 3000])));
    if (rng.chance(0.2)) bytes = new Uint8Array(gzipSync(bytes));
    yield { label: `ndim ${ndim} dims [${dims.slice(0, 6)}]`, files: { [target]: bytes }, target };
  }
  // 70 KB that inflate to 100 MB: refused at the cap (64 MiB), never held whole.
  const bomb = new Uint8Array(gzipSync(new Uint8Array(100 * 2 ** 20)));
  yield { label: `gzip bomb (${bomb.length} bytes)`, files: { [target]: bomb }, target };
}

Deno.test("fuzz: IDX files (raw and gzip) end in an array or one clear error naming the file", async () => {
  const rng = new FuzzRandom("idx");
  const seeds = await idxSeeds();
  const stats = await runFuzz(
    "idx",
    (function* () {
      yield* byteCases(
        "case-idx3-ubyte",
        seeds,
        rng,
        caseCount(2500),
        new Uint8Array([0, 0, 8, 1]),
      );
      yield* idxFieldCases(rng, caseCount(1000));
    })(),
  );
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// PNG

/** CRC-32 as PNG chunks use it (written here independently of lib/io/png.ts). */
function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return ~c >>> 0;
}

/** One PNG chunk with a correct CRC. */
function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(encoder.encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** zlib-deflate `raw` (the runtime's stream, as an independent encoder). */
async function deflate(raw: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

interface PngParts {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  /** Compression, filter and interlace methods. */
  methods: [number, number, number];
  /** Filtered rows: a filter byte then the row, per row. */
  raw: Uint8Array;
  palette?: Uint8Array;
  transparency?: Uint8Array;
}

/** A PNG from its parts (chunks with correct CRCs). */
async function pngFrom(parts: PngParts, options: { idat?: Uint8Array; end?: boolean } = {}) {
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, parts.width >>> 0);
  view.setUint32(4, parts.height >>> 0);
  header.set([parts.bitDepth, parts.colorType, ...parts.methods], 8);
  const chunks = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk("IHDR", header)];
  if (parts.palette) chunks.push(pngChunk("PLTE", parts.palette));
  if (parts.transparency) chunks.push(pngChunk("tRNS", parts.transparency));
  chunks.push(pngChunk("IDAT", options.idat ?? await deflate(parts.raw)));
  if (options.end !== false) chunks.push(pngChunk("IEND", new Uint8Array()));
  return concat(...chunks);
}

/** Rows of random pixels, each with a filter type 0..4 (as real encoders use them). */
function filteredRows(rng: FuzzRandom, width: number, height: number, channels: number) {
  const stride = width * channels;
  const raw = rng.bytes(height * (stride + 1));
  for (let y = 0; y < height; y++) raw[y * (stride + 1)] = y % 5;
  return raw;
}

/** Valid PNGs of every colour type the decoder reads, and a real one from docs/. */
async function pngSeeds(rng: FuzzRandom) {
  const gray = new Uint8Array(40 * 168);
  for (let y = 8; y < 32; y++) {
    for (const x of [20, 60, 100, 140]) gray.fill(255, y * 168 + x, y * 168 + x + 6);
  }
  const made: Array<[string, Uint8Array]> = [
    ["gray 168x40 (encodePng)", await encodePng(gray, 168, 40)],
    ["gray 8x8 (encodePng)", await encodePng(rng.bytes(64), 8, 8)],
  ];
  const kinds: Array<[string, number, number]> = [["RGB", 2, 3], ["RGBA", 6, 4], [
    "gray+alpha",
    4,
    2,
  ]];
  for (const [name, colorType, channels] of kinds) {
    made.push([
      `${name} 24x8, filters 0-4`,
      await pngFrom({
        width: 24,
        height: 8,
        bitDepth: 8,
        colorType,
        methods: [0, 0, 0],
        raw: filteredRows(rng, 24, 8, channels),
      }),
    ]);
  }
  const indices = filteredRows(rng, 20, 6, 1).map((v, i) => (i % 21 === 0 ? v : v % 4));
  made.push([
    "palette 20x6 with tRNS",
    await pngFrom({
      width: 20,
      height: 6,
      bitDepth: 8,
      colorType: 3,
      methods: [0, 0, 0],
      raw: indices,
      palette: rng.bytes(12),
      transparency: new Uint8Array([0, 128]),
    }),
  ]);
  const seeds = made.map(([name, bytes]) => ({ name, bytes, boundaries: everyByte(bytes.length) }));
  // A real PNG written by resvg (the report's figures): every chunk boundary.
  const real = await Deno.readFile(join(ROOT, "docs", "generated_samples.png"));
  const boundaries = [8];
  for (let at = 8; at + 8 <= real.length;) {
    at += 12 + new DataView(real.buffer).getUint32(at);
    boundaries.push(at, at - 4, at + 8);
  }
  seeds.push({ name: "docs/generated_samples.png", bytes: real, boundaries });
  return seeds;
}

/** PNGs with extreme IHDR fields, palettes, chunk lengths and image data, CRCs kept valid. */
async function* pngFieldCases(rng: FuzzRandom, count: number): AsyncGenerator<FuzzCase> {
  const target = "field.png";
  const sides = [0, 1, 7, 8, 40, 168, 32768, 32769, 0x7fffffff, 0xffffffff];
  for (let i = 0; i < count; i++) {
    const colorType = rng.pick([0, 2, 3, 4, 6, 1, 5, 7, 255]);
    const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType] ?? 1;
    const width = rng.chance(0.6) ? rng.pick([8, 16, 168]) : rng.pick(sides);
    const height = rng.chance(0.6) ? rng.pick([4, 8, 40]) : rng.pick(sides);
    const realWidth = Math.min(width, 200);
    const realHeight = Math.min(height, 50);
    let raw = filteredRows(rng, realWidth, realHeight, channels);
    const dataCase = rng.below(8);
    if (dataCase === 0) {
      raw = raw.map((v, k) => (k % (realWidth * channels + 1) === 0 ? rng.below(256) : v));
    }
    if (dataCase === 1) raw = raw.subarray(0, rng.below(raw.length + 1));
    if (dataCase === 2) raw = concat(raw, rng.bytes(rng.pick([1, 100, 5000])));
    const parts: PngParts = {
      width,
      height,
      bitDepth: rng.chance(0.7) ? 8 : rng.pick([0, 1, 2, 4, 16, 255]),
      colorType,
      methods: rng.chance(0.8)
        ? [0, 0, 0]
        : [rng.pick([0, 1, 255]), rng.pick([0, 1]), rng.pick([0, 1, 2])],
      raw,
    };
    if (colorType === 3 || rng.chance(0.1)) {
      const entries = rng.pick([0, 1, 2, 4, 256, 257]);
      parts.palette = rng.bytes(rng.chance(0.8) ? 3 * entries : rng.pick([1, 2, 4, 770]));
      if (rng.chance(0.5)) parts.transparency = rng.bytes(rng.pick([0, 1, 3, 300]));
    }
    let idat: Uint8Array | undefined;
    const idatCase = rng.below(10);
    if (idatCase === 0) idat = rng.bytes(rng.pick([0, 1, 2, 50]));
    if (idatCase === 1) idat = (await deflate(raw)).subarray(0, rng.below(20));
    const bytes = await pngFrom(parts, { idat, end: rng.chance(0.95) });
    yield {
      label: `IHDR ${width}x${height} depth ${parts.bitDepth} colour ${colorType} methods ` +
        `${parts.methods} (data case ${dataCase}, idat case ${idatCase})`,
      files: { [target]: bytes },
      target,
    };
  }
  // Chunk length fields past the end (CRC kept), chunks after IEND, a second IHDR.
  const base = await encodePng(rng.bytes(168 * 40), 168, 40);
  for (const value of EXTREME_U32) {
    const bytes = base.slice();
    new DataView(bytes.buffer).setUint32(33, value);
    yield { label: `IDAT length field ${value}`, files: { [target]: bytes }, target };
  }
  // Deflate data that inflates far beyond what the IHDR size needs (a decompression bomb).
  const bomb = await deflate(new Uint8Array(300 * 2 ** 20));
  yield {
    label: `zlib bomb: ${bomb.length} bytes of IDAT inflating to 300 MiB`,
    files: {
      [target]: await pngFrom({
        width: 168,
        height: 40,
        bitDepth: 8,
        colorType: 0,
        methods: [0, 0, 0],
        raw: new Uint8Array(),
      }, { idat: bomb }),
    },
    target,
  };
}

Deno.test("fuzz: PNG files end in an image or one clear error naming the file", async () => {
  const rng = new FuzzRandom("png");
  const seeds = await pngSeeds(rng);
  const magic = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const cases: FuzzCase[] = [...byteCases("case.png", seeds, rng, caseCount(2000), magic)];
  for await (const c of pngFieldCases(rng, caseCount(1000))) cases.push(c);
  const stats = await runFuzz("png", cases);
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// safetensors

/** A safetensors file from a header object (or text) and a data section. */
function safetensorsFile(header: unknown, data: Uint8Array, lengthField?: bigint): Uint8Array {
  const text = encoder.encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

/** The header and data section of a safetensors file. */
function splitSafetensors(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return {
    header: decoder.decode(bytes.subarray(8, 8 + length)),
    data: bytes.subarray(8 + length),
  };
}

Deno.test("fuzz: safetensors files end in tensors or one clear error naming the file", async () => {
  const rng = new FuzzRandom("safetensors");
  const values = Float32Array.from({ length: 24 }, (_, i) => (i - 12) / 3);
  const small = encodeSafetensors({
    a: { dtype: "F32", shape: [2, 3], data: values.subarray(0, 6) },
    ah: { dtype: "F16", shape: [4], data: values.subarray(6, 10) },
    b: { dtype: "BF16", shape: [2, 2], data: values.subarray(10, 14) },
    s: { dtype: "F32", shape: [], data: values.subarray(14, 15) },
    e: { dtype: "F32", shape: [0, 3], data: new Float32Array() },
  }, { format: "pt" });
  const real = await Deno.readFile(join(FIXTURES, "vgg", "expected.safetensors"));
  const realHeader = splitSafetensors(real).header;
  const realBoundaries = [8, 8 + realHeader.length];
  for (const entry of Object.values(JSON.parse(realHeader)) as Array<{ data_offsets?: number[] }>) {
    for (const offset of entry.data_offsets ?? []) {
      realBoundaries.push(8 + realHeader.length + offset);
    }
  }
  const seeds = [
    { name: "small F32/F16/BF16", bytes: small, boundaries: everyByte(small.length) },
    {
      name: "tests/fixtures/vgg/expected.safetensors",
      bytes: real,
      boundaries: everyByte(800, realBoundaries),
    },
  ];
  function* fieldCases(count: number): Generator<FuzzCase> {
    const target = "field.safetensors";
    for (let i = 0; i < count; i++) {
      const seed = rng.chance(0.7) ? small : real;
      const { header, data } = splitSafetensors(seed);
      const weighted = ["dtype", "shape", "data_offsets", "__metadata__"];
      const { label, text } = mutateJson(header, rng, weighted);
      const lengthField = rng.chance(0.85)
        ? undefined
        : rng.pick([0n, 1n, 7n, BigInt(text.length + 1), 2n ** 63n, 2n ** 64n - 1n, 100_000_001n]);
      yield {
        label: `${label}${lengthField === undefined ? "" : `, length field ${lengthField}`}`,
        files: { [target]: safetensorsFile(text, data, lengthField) },
        target,
      };
    }
  }
  const stats = await runFuzz(
    "safetensors",
    (function* () {
      yield* byteCases("case.safetensors", seeds, rng, caseCount(1500), new Uint8Array(8));
      yield* fieldCases(caseCount(1500));
    })(),
  );
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// Checkpoints

/** The files of a checkpoint folder. */
async function checkpointFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for await (const entry of Deno.readDir(dir)) {
    files[entry.name] = await Deno.readFile(join(dir, entry.name));
  }
  return files;
}

/** Offsets where the weights of a manifest start and end in the concatenated weights. */
function weightBoundaries(modelJson: Uint8Array): number[] {
  const manifest = JSON.parse(decoder.decode(modelJson)).weightsManifest;
  const bounds = [0];
  let at = 0;
  for (const spec of manifest.flatMap((g: { weights: unknown[] }) => g.weights)) {
    at += (spec as { shape: number[] }).shape.reduce((a, b) => a * b, 1) * 4;
    bounds.push(at);
  }
  return bounds;
}

Deno.test("fuzz: checkpoints end in a model or one clear error naming the file", async () => {
  await initBackend("wasm", { quiet: true, threads: 1 });
  const rng = new FuzzRandom("checkpoint");
  // A small real checkpoint with an optimiser state, written by saveCheckpoint.
  seedEverything(5);
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [40, 168, 1], filters: 4, kernelSize: 3, activation: "relu" }),
      tf.layers.batchNormalization(),
      tf.layers.maxPooling2d({ poolSize: 8 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 37 }),
    ],
  });
  const adam = new TorchAdam(trainableVariables(model));
  adam.apply(trainableVariables(model).map((v) => tf.onesLike(v)));
  const root = await Deno.makeTempDir({ prefix: "digitsum_fuzz_ck_" });
  await saveCheckpoint(join(root, "tiny"), model, { kind: "tiny", seed: 5, history: [] }, {
    optimizer: adam,
  });
  const tiny = await checkpointFiles(join(root, "tiny"));
  const shipped = await checkpointFiles(join(ROOT, "trained_models", "sumnet"));
  await Deno.remove(root, { recursive: true });
  const modelKeys = [
    "units",
    "filters",
    "kernel_size",
    "pool_size",
    "strides",
    "batch_input_shape",
    "dtype",
    "paths",
    "weights",
    "shape",
    "name",
    "class_name",
    "layers",
    "inbound_nodes",
    "target_shape",
  ];
  function* cases(): Generator<FuzzCase> {
    for (
      // SumNet (custom layers, the shipped model) costs ~0.4 s per case that loads: fewer cases.
      const [seedName, files, budget] of [["tiny", tiny, 1], ["sumnet", shipped, 0.05]] as const
    ) {
      // model.json, digitsum.json, optimizer.json: truncated at every byte (tiny) or often.
      for (const target of ["model.json", "digitsum.json", "optimizer.json"]) {
        const bytes = files[target];
        if (!bytes) continue;
        const lengths = truncationLengths(bytes.length, everyByte(bytes.length));
        const step = seedName === "tiny" ? 1 : Math.ceil(bytes.length / 100);
        for (const length of lengths.filter((_, i) => i % step === 0)) {
          yield {
            label: `${seedName} ${target} truncated to ${length}`,
            files: { ...files, [target]: bytes.subarray(0, length) },
            target,
          };
        }
      }
      // weights.bin and optimizer.bin: every tensor boundary.
      const bounds = weightBoundaries(files["model.json"]);
      for (const target of ["weights.bin", "optimizer.bin"]) {
        const bytes = files[target];
        if (!bytes) continue;
        for (const length of truncationLengths(bytes.length, bounds)) {
          yield {
            label: `${seedName} ${target} truncated to ${length}`,
            files: { ...files, [target]: bytes.subarray(0, length) },
            target,
          };
        }
      }
      // Missing files.
      for (const target of Object.keys(files)) {
        yield {
          label: `${seedName} without ${target}`,
          files: { ...files, [target]: null },
          target,
        };
      }
      // Structure-aware JSON mutations and byte mutations of every file.
      const n = Math.round(caseCount(1200) * budget);
      for (let i = 0; i < n; i++) {
        const target = rng.pick(
          Object.keys(files).filter((f) => seedName === "tiny" || f.endsWith(".json")),
        );
        const bytes = files[target];
        let mutated: { label: string; bytes: Uint8Array };
        if (target.endsWith(".json") && rng.chance(0.7)) {
          const weighted = target === "model.json"
            ? modelKeys
            : ["kind", "history", "config", "sizes", "step", "rng", "epoch"];
          const { label, text } = mutateJson(decoder.decode(bytes), rng, weighted);
          mutated = { label, bytes: encoder.encode(text) };
        } else {
          mutated = mutateBytes(bytes, rng);
        }
        yield {
          label: `${seedName} ${target}: ${mutated.label}`,
          files: { ...files, [target]: mutated.bytes },
          target,
        };
      }
    }
  }
  const stats = await runFuzz("checkpoint", cases());
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// The sweep's records

/**
 * A record with its times fixed (seconds, images per second, dates, versions), so that the same
 * seed draws the same cases on every run of the test.
 */
function steady(bytes: Uint8Array): Uint8Array {
  const fix = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(fix);
    if (typeof value !== "object" || value === null) return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, v]) => [
        key,
        typeof v === "number" && /seconds|PerSecond|ms$/i.test(key)
          ? 1.5
          : key === "finishedAt" || key === "versions"
          ? (key === "versions" ? {} : "2026-01-01T00:00:00.000Z")
          : fix(v),
      ]),
    );
  };
  return encoder.encode(JSON.stringify(fix(JSON.parse(decoder.decode(bytes))), null, 2) + "\n");
}

Deno.test("fuzz: sweep records end in tables or one clear error naming the file", async () => {
  const root = await Deno.makeTempDir({ prefix: "digitsum_fuzz_sweep_" });
  const data = join(root, "data");
  await ensureDataset(data, { imagesPerFile: 100, testCount: 64, log: () => {} });
  // A real sweep: two runs done, a third stopped after its first epoch (state kept).
  const config = resolveConfig({
    models: ["cnn-regressor"],
    seeds: [0, 1, 2],
    epochs: 2,
    limit: 64,
    testLimit: 64,
    backend: "wasm",
    dataDir: data,
    out: join(root, "sweep"),
  });
  const thirdState = join(config.out, "runs", "cnn-regressor_2", "state", "digitsum.json");
  await runSweep(config, {
    log: () => {},
    progress: false,
    keepState: true,
    shouldStop: () => {
      try {
        return Deno.statSync(thirdState).isFile;
      } catch {
        return false;
      }
    },
  });
  const files: Record<string, Uint8Array> = {};
  const walk = async (dir: string, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const rel = `${prefix}/${entry.name}`;
      if (entry.isDirectory && entry.name !== "checkpoint") await walk(join(dir, entry.name), rel);
      else if (entry.isFile && /(?<!state)\/[a-z_]+\.json$|state\/digitsum\.json$/.test(rel)) {
        files[rel] = steady(await Deno.readFile(join(dir, entry.name)));
      }
    }
  };
  await walk(config.out, "sweep");
  await Deno.remove(root, { recursive: true });
  files["expected_config.json"] = encoder.encode(JSON.stringify(config));
  const targets = Object.keys(files).filter((f) => f.startsWith("sweep/")).sort();
  assert.ok(targets.includes("sweep/runs/cnn-regressor_2/state/digitsum.json"), targets.join());
  const rng = new FuzzRandom("sweep");
  const weighted = [
    "status",
    "accuracy",
    "val",
    "train",
    "test",
    "correct",
    "total",
    "history",
    "epoch",
    "trainLoss",
    "valAccuracy",
    "models",
    "seeds",
    "epochs",
    "limit",
    "testLimit",
    "key",
    "model",
    "seed",
    "config",
    "predictions",
    "labels",
    "backend",
  ];
  function* cases(): Generator<FuzzCase> {
    for (const target of targets) {
      const bytes = files[target];
      const step = Math.max(1, Math.ceil(bytes.length / 100));
      for (const length of truncationLengths(bytes.length, everyByte(bytes.length))) {
        if (length % step !== 0 && length !== bytes.length - 1) continue;
        yield {
          label: `${target} truncated to ${length}`,
          files: { ...files, [target]: bytes.subarray(0, length) },
          target,
        };
      }
    }
    for (let i = 0; i < caseCount(1500); i++) {
      const target = rng.pick(targets);
      const bytes = files[target];
      const mutated = rng.chance(0.75)
        ? (({ label, text }) => ({ label, bytes: encoder.encode(text) }))(
          mutateJson(decoder.decode(bytes), rng, weighted),
        )
        : mutateBytes(bytes, rng);
      yield {
        label: `${target}: ${mutated.label}`,
        files: { ...files, [target]: mutated.bytes },
        target,
      };
    }
  }
  const stats = await runFuzz("sweep", cases());
  assert.ok(stats.results > 0 && stats.errors > 0);
});

// ---------------------------------------------------------------------------------------------
// The CLIs' image and label pairs (evaluate, train)

Deno.test("fuzz: image and label pairs that do not fit each other or the task are refused by name", async () => {
  const rng = new FuzzRandom("images");
  const images = (shape: number[], dtype: "uint8" | "float32" = "uint8") => {
    const count = shape.reduce((a, b) => a * b, 1);
    return encodeNpy({
      dtype,
      shape,
      data: dtype === "uint8" ? rng.bytes(count) : Float32Array.from(rng.bytes(count)),
    });
  };
  const labels = (values: number[], dtype: "uint8" | "int64" | "float64" | "float32") =>
    encodeNpy({
      dtype,
      shape: [values.length],
      data: dtype === "uint8"
        ? Uint8Array.from(values)
        : dtype === "int64"
        ? BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v))))
        : dtype === "float64"
        ? Float64Array.from(values)
        : Float32Array.from(values),
    });
  function* cases(): Generator<FuzzCase> {
    const imageShapes = [
      [3, 40, 168],
      [3, 40, 167],
      [3, 168, 40],
      [3, 40, 168, 1],
      [3, 40, 168, 3],
      [40, 168],
      [0, 40, 168],
      [3, 6720],
    ];
    const labelSets = [
      [0, 36, 17],
      [0, 36],
      [0, 36, 17, 4],
      [0, 37, 1],
      [-1, 2, 3],
      [1.5, 2, 3],
      [NaN, 1, 2],
      [Infinity, 1, 2],
      [1e10, 1, 2],
      [],
    ];
    for (let i = 0; i < caseCount(600); i++) {
      const shape = rng.pick(imageShapes);
      const imageDtype = rng.chance(0.1) ? "float32" : "uint8";
      const values = rng.pick(labelSets);
      const dtype = rng.pick(["uint8", "int64", "float64", "float32"] as const);
      const cleanValues = dtype === "uint8" || dtype === "int64"
        ? values.map((v) => (Number.isFinite(v) ? v : 0))
        : values;
      // The file at fault is the one the error must name: the images first, then the labels.
      const imagesFit = imageDtype === "uint8" && shape.length === 3 && shape[1] === 40 &&
        shape[2] === 168;
      yield {
        label: `images ${imageDtype} [${shape}], ${dtype} labels [${cleanValues}]`,
        files: {
          "images.npy": images(shape, imageDtype),
          "labels.npy": labels(cleanValues, dtype),
        },
        target: imagesFit ? "labels.npy" : "images.npy",
      };
    }
  }
  const stats = await runFuzz("images", cases());
  assert.ok(stats.results > 0 && stats.errors > 0);
});
