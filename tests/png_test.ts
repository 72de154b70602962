import assert from "node:assert/strict";
import { decodePng, encodePng, pngToGray } from "../lib/png.ts";

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
