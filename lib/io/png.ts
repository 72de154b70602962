/**
 * A small PNG encoder (8-bit grayscale) and decoder (8-bit gray, gray+alpha, RGB, RGBA and
 * palette, non-interlaced), using the runtime's zlib streams (`CompressionStream("deflate")`).
 *
 * @module
 */

/** The 8-byte PNG signature. */
const PNG_SIGNATURE = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
/** Channels per pixel for each supported PNG colour type. */
const CHANNELS_BY_COLOR_TYPE: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Names of the PNG colour types, for messages. */
const COLOR_TYPE_NAMES: Record<number, string> = {
  0: "grayscale",
  2: "RGB",
  3: "palette",
  4: "grayscale+alpha",
  6: "RGBA",
};
/** Largest width or height accepted when decoding (guards against absurd allocations). */
const MAX_DIMENSION = 1 << 15;
/** Most pixels accepted when decoding (64 megapixels, 256 MB as RGBA). */
const MAX_PIXELS = 1 << 26;
/** Most entries of a PLTE chunk (8-bit indices). */
const MAX_PALETTE_ENTRIES = 256;

/** A decoded PNG image: `data` holds `height * width * channels` bytes, row-major. */
export interface DecodedPng {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA (palette images are expanded to RGB/RGBA). */
  channels: 1 | 2 | 3 | 4;
  /** Pixel bytes, `[height, width, channels]` flattened. */
  data: Uint8Array;
}

/** The CRC-32 table of the PNG specification. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 over `bytes`, as PNG chunks use. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Runs `bytes` through a compression or decompression stream and collects the output. */
async function pipeThrough(
  bytes: Uint8Array,
  stream: CompressionStream | DecompressionStream,
): Promise<Uint8Array> {
  const output = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(output).arrayBuffer());
}

/** Compressed bytes fed to the inflater at a time (deflate expands at most ~1032 times). */
const INFLATE_STEP = 1024;

/**
 * Inflates zlib data, stopping with `undefined` as soon as the output would exceed `limit` bytes
 * (a few kilobytes of deflate data can expand to gigabytes). The input goes in small steps, so
 * no single output chunk can be much larger than a megabyte.
 */
async function inflateAtMost(bytes: Uint8Array, limit: number): Promise<Uint8Array | undefined> {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const feeding = (async () => {
    for (let at = 0; at < bytes.length; at += INFLATE_STEP) {
      await writer.write(bytes.slice(at, at + INFLATE_STEP));
    }
    await writer.close();
  })();
  // Errors reach the reader too; the writer's copy must not become an unhandled rejection.
  feeding.catch(() => {});
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        await writer.abort().catch(() => {});
        return undefined;
      }
      parts.push(value);
    }
    await feeding;
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** One chunk (length, type, data, CRC) as bytes. */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * Encodes an 8-bit grayscale image as PNG (no filtering, zlib-deflated).
 *
 * @param gray `height * width` bytes, row-major
 * @param width width in pixels
 * @param height height in pixels
 * @returns the PNG file bytes
 */
export async function encodePng(
  gray: Uint8Array,
  width: number,
  height: number,
): Promise<Uint8Array> {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`encodePng: invalid size ${width}x${height}`);
  }
  if (gray.length !== width * height) {
    throw new RangeError(
      `encodePng: expected ${width * height} bytes for ${width}x${height}, got ${gray.length}`,
    );
  }
  const raw = new Uint8Array(height * (width + 1)); // filter byte 0 then the row
  for (let y = 0; y < height; y++) {
    raw.set(gray.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  const idat = await pipeThrough(raw, new CompressionStream("deflate"));
  const parts = [
    PNG_SIGNATURE,
    chunk("IHDR", header),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** The Paeth predictor of the PNG specification. */
function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * Decodes a PNG file: 8-bit depth, colour types gray, gray+alpha, RGB, RGBA or palette,
 * non-interlaced. Anything else is rejected with an error naming `name` and the reason.
 *
 * @param bytes the PNG file bytes
 * @param name file name used in error messages
 * @returns the pixels, `[height, width, channels]` flattened
 */
// Long because: the PNG chunk loop and its checks in file order (signature, IHDR, PLTE, tRNS, IDAT, IEND), each refusal next to what it checks.
export async function decodePng(bytes: Uint8Array, name = "PNG data"): Promise<DecodedPng> {
  const fail = (why: string): never => {
    throw new Error(`Cannot read ${name}: ${why}`);
  };
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) {
    fail("not a PNG file (bad signature)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let width = 0;
  let height = 0;
  let bitDepth = 0;
  let colorType = -1;
  let palette: Uint8Array | undefined;
  let transparency: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let sawEnd = false;
  while (offset < bytes.length && !sawEnd) {
    if (offset + 12 > bytes.length) fail(`truncated chunk header at byte ${offset}`);
    const length = view.getUint32(offset);
    // The chunk type as text; bytes other than printable ASCII shown as \xNN (corrupt files).
    const type = [...bytes.subarray(offset + 4, offset + 8)].map((b) =>
      b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`
    ).join("");
    if (offset + 12 + length > bytes.length) fail(`truncated ${type} chunk at byte ${offset}`);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    const crc = view.getUint32(offset + 8 + length);
    if (crc32(bytes.subarray(offset + 4, offset + 8 + length)) !== crc) {
      fail(`CRC mismatch in ${type} chunk at byte ${offset}`);
    }
    if (type === "IHDR") {
      if (length !== 13) fail(`IHDR chunk has length ${length}, expected 13`);
      const h = new DataView(data.buffer, data.byteOffset, 13);
      width = h.getUint32(0);
      height = h.getUint32(4);
      bitDepth = data[8];
      colorType = data[9];
      if (data[10] !== 0 || data[11] !== 0) fail("unknown compression or filter method");
      if (data[12] !== 0) fail("interlaced (Adam7) PNGs are not supported; save it non-interlaced");
    } else if (type === "PLTE") {
      if (length % 3 !== 0 || length === 0 || length > 3 * MAX_PALETTE_ENTRIES) {
        fail(`PLTE chunk has length ${length}, expected 3 to 768 bytes in steps of 3`);
      }
      palette = data;
    } else if (type === "tRNS") {
      transparency = data;
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      sawEnd = true;
    }
    offset += 12 + length;
  }
  if (colorType < 0) fail("missing IHDR chunk");
  if (!sawEnd) fail("truncated file: no IEND chunk");
  if (!(colorType in CHANNELS_BY_COLOR_TYPE)) fail(`unknown colour type ${colorType}`);
  if (bitDepth !== 8) {
    fail(
      `unsupported bit depth ${bitDepth} (${
        COLOR_TYPE_NAMES[colorType]
      }); only 8-bit PNGs are supported`,
    );
  }
  if (
    width < 1 || height < 1 || width > MAX_DIMENSION || height > MAX_DIMENSION ||
    width * height > MAX_PIXELS
  ) {
    fail(
      `unsupported size ${width}x${height} (1 to ${MAX_DIMENSION} px a side, at most ` +
        `${MAX_PIXELS} pixels)`,
    );
  }
  if (idat.length === 0) fail("no IDAT chunk (no image data)");
  if (colorType === 3 && !palette) fail("palette image without a PLTE chunk");
  const compressed = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of idat) {
    compressed.set(c, at);
    at += c.length;
  }
  const bpp = CHANNELS_BY_COLOR_TYPE[colorType];
  const stride = width * bpp;
  let raw: Uint8Array | undefined;
  try {
    // Rows of `stride` bytes after a filter byte; a little slack for encoders that pad.
    raw = await inflateAtMost(compressed, height * (stride + 1) + 1024);
  } catch (error) {
    return fail(`corrupt image data (${error instanceof Error ? error.message : error})`);
  }
  if (raw === undefined) {
    return fail(`image data inflates to more than ${width}x${height} pixels need`);
  }
  if (raw.length < height * (stride + 1)) {
    fail(`image data too short: ${raw.length} bytes for ${width}x${height}`);
  }
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : undefined;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? row[i - bpp] : 0;
      const b = prev ? prev[i] : 0;
      const c = prev && i >= bpp ? prev[i - bpp] : 0;
      let v: number;
      switch (filter) {
        case 0:
          v = src[i];
          break;
        case 1:
          v = src[i] + a;
          break;
        case 2:
          v = src[i] + b;
          break;
        case 3:
          v = src[i] + ((a + b) >> 1);
          break;
        case 4:
          v = src[i] + paeth(a, b, c);
          break;
        default:
          return fail(`unknown filter type ${filter} on row ${y}`);
      }
      row[i] = v & 0xff;
    }
  }
  if (colorType !== 3) {
    return { width, height, channels: bpp as 1 | 2 | 3 | 4, data: pixels };
  }
  // Palette: expand to RGB, or RGBA when a tRNS chunk gives alpha values.
  const entries = palette!.length / 3;
  const channels = transparency ? 4 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    const index = pixels[i];
    if (index >= entries) fail(`palette index ${index} out of range (${entries} entries)`);
    out[i * channels] = palette![index * 3];
    out[i * channels + 1] = palette![index * 3 + 1];
    out[i * channels + 2] = palette![index * 3 + 2];
    if (transparency) {
      out[i * channels + 3] = index < transparency.length ? transparency[index] : 255;
    }
  }
  return { width, height, channels, data: out };
}

/**
 * Converts a decoded PNG to 8-bit grayscale: RGB by the ITU-R BT.601 luma weights
 * (0.299, 0.587, 0.114); alpha composited over black (so a transparent background reads as the
 * task's black background).
 *
 * @param image a decoded PNG
 * @returns `height * width` gray bytes
 */
export function pngToGray(image: DecodedPng): Uint8Array {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(width * height);
  for (let i = 0; i < width * height; i++) {
    const p = i * channels;
    let v: number;
    let alpha = 255;
    if (channels <= 2) {
      v = data[p];
      if (channels === 2) alpha = data[p + 1];
    } else {
      v = 0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2];
      if (channels === 4) alpha = data[p + 3];
    }
    out[i] = Math.round((v * alpha) / 255);
  }
  return out;
}
