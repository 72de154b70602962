import assert from "node:assert/strict";
import { decodePng, encodePng, pngToGray } from "../lib/io/png.ts";

/** The study's reference figure: an RGBA PNG written by matplotlib, using filters 0, 1, 2, 4. */
const REFERENCE_PNG = "/work/shared/reference/original_data_samples.png";
/** sha256 of its unfiltered RGBA pixels, computed independently with Python's zlib. */
const REFERENCE_PIXELS_SHA256 = "5726d79e344fbcf467f1144036e14baab1158c7918176e39ccd1e114e8c1a550";

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function gradient(width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = (i * 37 + (i >> 3)) & 0xff;
  return out;
}

/** Byte offset of the first chunk of `type` in `png` (its length field). */
function findChunk(png: Uint8Array, type: string): number {
  for (let i = 8; i < png.length - 4; i++) {
    if (String.fromCharCode(...png.subarray(i + 4, i + 8)) === type) return i;
  }
  throw new Error(`no ${type} chunk`);
}

Deno.test("encodePng() output decodes back to the same gray pixels", async () => {
  const gray = gradient(168, 40);
  const png = await encodePng(gray, 168, 40);
  const decoded = await decodePng(png, "roundtrip.png");
  assert.equal(decoded.width, 168);
  assert.equal(decoded.height, 40);
  assert.equal(decoded.channels, 1);
  assert.deepEqual(decoded.data, gray);
  assert.deepEqual(pngToGray(decoded), gray);
});

Deno.test("decodePng() reads a real filtered RGBA PNG bit-exactly", async () => {
  const decoded = await decodePng(await Deno.readFile(REFERENCE_PNG), REFERENCE_PNG);
  assert.equal(decoded.width, 1089);
  assert.equal(decoded.height, 352);
  assert.equal(decoded.channels, 4);
  assert.equal(await sha256Hex(decoded.data), REFERENCE_PIXELS_SHA256);
  // (x=100, y=50) lies inside the first sample's black background; (0, 0) is transparent.
  const gray = pngToGray(decoded);
  assert.equal(gray[50 * 1089 + 100], 0);
  assert.equal(gray[0], 0);
});

Deno.test("pngToGray() uses BT.601 weights and composites alpha over black", () => {
  const rgba = new Uint8Array([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 200, 200, 200, 128]);
  const gray = pngToGray({ width: 4, height: 1, channels: 4, data: rgba });
  assert.deepEqual(Array.from(gray), [76, 150, 29, 100]);
});

Deno.test("decodePng() rejects a file that is not a PNG", async () => {
  await assert.rejects(
    decodePng(new TextEncoder().encode("hello, not a png"), "notes.txt"),
    /Cannot read notes\.txt: not a PNG file \(bad signature\)/,
  );
});

Deno.test("decodePng() rejects a corrupted chunk with a CRC error", async () => {
  const png = await encodePng(gradient(8, 8), 8, 8);
  png[findChunk(png, "IDAT") + 9] ^= 0xff;
  await assert.rejects(decodePng(png, "bad.png"), /Cannot read bad\.png: CRC mismatch in IDAT/);
});

Deno.test("decodePng() rejects a truncated file", async () => {
  const png = await encodePng(gradient(8, 8), 8, 8);
  await assert.rejects(
    decodePng(png.subarray(0, png.length - 20), "cut.png"),
    /Cannot read cut\.png: truncated/,
  );
});

Deno.test("decodePng() rejects 16-bit and interlaced PNGs with a clear reason", async () => {
  for (
    const [offset, value, pattern] of [
      [8, 16, /unsupported bit depth 16 \(grayscale\); only 8-bit PNGs are supported/],
      [12, 1, /interlaced \(Adam7\) PNGs are not supported/],
    ] as const
  ) {
    const png = await encodePng(gradient(8, 8), 8, 8);
    const ihdr = findChunk(png, "IHDR");
    png[ihdr + 8 + offset] = value;
    // Recompute the IHDR CRC so that only the header field is "wrong".
    const body = png.subarray(ihdr + 4, ihdr + 8 + 13);
    let c = 0xffffffff;
    for (const b of body) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    new DataView(png.buffer).setUint32(ihdr + 8 + 13, (c ^ 0xffffffff) >>> 0);
    await assert.rejects(decodePng(png, "odd.png"), pattern);
  }
});

Deno.test("encodePng() rejects a buffer of the wrong size", async () => {
  await assert.rejects(encodePng(new Uint8Array(10), 4, 4), /expected 16 bytes for 4x4, got 10/);
});

/** A PNG chunk with a correct CRC. */
function chunkOf(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  let c = 0xffffffff;
  for (const b of out.subarray(4, 8 + data.length)) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  view.setUint32(8 + data.length, (c ^ 0xffffffff) >>> 0);
  return out;
}

/** A PNG from an IHDR (width, height, colour type) and chunks after it. */
function pngOf(width: number, height: number, colorType: number, chunks: Uint8Array[]): Uint8Array {
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header.set([8, colorType, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunkOf("IHDR", header),
    ...chunks,
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function deflate(raw: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("decodePng() stops inflating at the size the header needs (a decompression bomb)", async () => {
  // 100 MiB of zeros in ~100 KB of IDAT for an 8 x 8 image. Before: inflated whole (a hang
  // at 300 MiB in the fuzz test).
  const idat = await deflate(new Uint8Array(100 * 2 ** 20));
  const png = pngOf(8, 8, 0, [chunkOf("IDAT", idat), chunkOf("IEND", new Uint8Array())]);
  const before = Deno.memoryUsage().external;
  await assert.rejects(
    decodePng(png, "bomb.png"),
    /Cannot read bomb\.png: image data inflates to more than 8x8 pixels need/,
  );
  assert.ok(Deno.memoryUsage().external - before < 32 * 2 ** 20, "no large buffer was held");
});

Deno.test("decodePng() refuses a malformed palette, a missing IEND and names odd chunk types", async () => {
  const raw = await deflate(new Uint8Array(2 * 3));
  const end = chunkOf("IEND", new Uint8Array());
  await assert.rejects(
    decodePng(
      pngOf(2, 2, 3, [chunkOf("PLTE", new Uint8Array(4)), chunkOf("IDAT", raw), end]),
      "p.png",
    ),
    /PLTE chunk has length 4, expected 3 to 768 bytes in steps of 3/,
  );
  await assert.rejects(
    decodePng(pngOf(2, 2, 0, [chunkOf("IDAT", raw)]), "cut.png"),
    /Cannot read cut\.png: truncated file: no IEND chunk/,
  );
  const odd = pngOf(2, 2, 0, [chunkOf("IDAT", raw), end]);
  odd[38] = 0; // a byte of the IDAT type: its CRC no longer matches
  await assert.rejects(decodePng(odd, "odd.png"), /CRC mismatch in I\\x00AT chunk/);
});
