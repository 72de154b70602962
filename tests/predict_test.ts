import assert from "node:assert/strict";
import { join } from "node:path";
import { readInput, readNpyInput, readPngInput } from "../lib/data/input_files.ts";
import { resizeGray } from "../lib/data/image_input.ts";
import { IMAGE_SIZE } from "../lib/constants.ts";
import { exists } from "../lib/io/fsutil.ts";
import { encodeNpy } from "../lib/io/npy.ts";
import { encodePng } from "../lib/io/png.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SHIPPED = join(ROOT, "trained_models", "sumnet");

/** CRC-32 as PNG uses it. */
function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return ~c >>> 0;
}

/** An 8-bit RGB PNG (colour type 2), written independently of lib/io/png.ts. */
async function encodeRgbPng(rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const raw = new Uint8Array(height * (3 * width + 1));
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * 3 * width, (y + 1) * 3 * width), y * (3 * width + 1) + 1);
  }
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  const idat = new Uint8Array(await new Response(stream).arrayBuffer());
  const chunk = (type: string, data: Uint8Array) => {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", header),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A 40 x 168 test image: white bars on black. */
function barsImage(): Uint8Array {
  const gray = new Uint8Array(IMAGE_SIZE);
  for (let y = 8; y < 32; y++) {
    for (const x0 of [10, 50, 90, 130]) {
      for (let x = x0; x < x0 + 4; x++) gray[y * 168 + x] = 255;
    }
  }
  return gray;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readPngInput() passes a 168 x 40 gray PNG through unchanged", async () => {
  await withTempDir(async (dir) => {
    const gray = barsImage();
    const path = join(dir, "bars.png");
    await Deno.writeFile(path, await encodePng(gray, 168, 40));
    const input = await readPngInput(path);
    assert.equal(input.count, 1);
    assert.equal(input.nameOf(0), "bars.png");
    assert.deepEqual(input.notes, []);
    assert.deepEqual(await input.read(0, 1), gray);
  });
});

Deno.test("readPngInput() converts a black-on-white RGB PNG of twice the size", async () => {
  await withTempDir(async (dir) => {
    const gray = barsImage();
    const rgb = new Uint8Array(336 * 80 * 3);
    for (let y = 0; y < 80; y++) {
      for (let x = 0; x < 336; x++) {
        const v = 255 - gray[Math.floor(y / 2) * 168 + Math.floor(x / 2)];
        rgb.fill(v, (y * 336 + x) * 3, (y * 336 + x) * 3 + 3);
      }
    }
    const path = join(dir, "scan.png");
    await Deno.writeFile(path, await encodeRgbPng(rgb, 336, 80));
    const input = await readPngInput(path);
    assert.equal(input.notes.length, 3, input.notes.join("\n"));
    assert.match(input.notes[0], /RGB converted to gray/);
    assert.match(input.notes[1], /inverted to white on black/);
    assert.match(input.notes[2], /resized from 336 x 80 to 168 x 40/);
    assert.deepEqual(await input.read(0, 1), gray);
  });
});

Deno.test("readPngInput() pads a wider strip with black and says so", async () => {
  await withTempDir(async (dir) => {
    const gray = new Uint8Array(40 * 200);
    for (let y = 10; y < 30; y++) gray.fill(255, y * 200 + 20, y * 200 + 30);
    const path = join(dir, "wide.png");
    await Deno.writeFile(path, await encodePng(gray, 200, 40));
    const input = await readPngInput(path);
    assert.match(input.notes[0], /resized from 200 x 40 to 168 x 34.*padded with black/);
    const pixels = await input.read(0, 1);
    assert.equal(pixels.length, IMAGE_SIZE);
    assert.equal(pixels[0], 0);
  });
});

Deno.test("readPngInput() refuses unusable images with the reason", async () => {
  await withTempDir(async (dir) => {
    const square = join(dir, "digit.png");
    const digit = new Uint8Array(28 * 28);
    digit.fill(255, 300, 400);
    await Deno.writeFile(square, await encodePng(digit, 28, 28));
    await assert.rejects(readPngInput(square), /Cannot use .*digit\.png: 28 x 28 px .*not a row/);
    const blank = join(dir, "blank.png");
    await Deno.writeFile(blank, await encodePng(new Uint8Array(IMAGE_SIZE), 168, 40));
    await assert.rejects(readPngInput(blank), /Cannot use .*blank\.png: the image is blank/);
    const tiny = join(dir, "tiny.png");
    await Deno.writeFile(tiny, await encodePng(new Uint8Array(24 * 4).fill(9), 24, 4));
    await assert.rejects(readPngInput(tiny), /tiny\.png: 24 x 4 px is too small/);
    const fake = join(dir, "fake.png");
    await Deno.writeTextFile(fake, "not a png");
    await assert.rejects(readPngInput(fake), /Cannot read .*fake\.png: not a PNG file/);
    await assert.rejects(readPngInput(join(dir, "missing.png")), /Cannot read .*missing\.png/);
  });
});

Deno.test("readNpyInput() reads N x 40 x 168 uint8 and one 40 x 168 image", async () => {
  await withTempDir(async (dir) => {
    const stack = join(dir, "three.npy");
    const data = new Uint8Array(3 * IMAGE_SIZE).map((_, i) => i % 251);
    await Deno.writeFile(stack, encodeNpy({ dtype: "uint8", shape: [3, 40, 168], data }));
    const input = await readNpyInput(stack);
    assert.equal(input.count, 3);
    assert.deepEqual([0, 1, 2].map(input.nameOf), ["three.npy[0]", "three.npy[1]", "three.npy[2]"]);
    assert.deepEqual(await input.read(0, 3), data);
    assert.deepEqual(await input.read(1, 2), data.subarray(IMAGE_SIZE));
    input.close();
    const one = join(dir, "one.npy");
    await Deno.writeFile(
      one,
      encodeNpy({ dtype: "uint8", shape: [40, 168], data: data.subarray(0, IMAGE_SIZE) }),
    );
    const single = await readNpyInput(one);
    assert.equal(single.count, 1);
    assert.equal(single.nameOf(0), "one.npy[0]");
    assert.deepEqual(await single.read(0, 1), data.subarray(0, IMAGE_SIZE));
    single.close();
  });
});

Deno.test("readNpyInput() rejects other dtypes and shapes, naming the file", async () => {
  await withTempDir(async (dir) => {
    const floats = join(dir, "floats.npy");
    await Deno.writeFile(
      floats,
      encodeNpy({ dtype: "float32", shape: [1, 40, 168], data: new Float32Array(IMAGE_SIZE) }),
    );
    await assert.rejects(
      readNpyInput(floats),
      /Cannot use .*floats\.npy: expected uint8 images of shape \[N, 40, 168\], got float32 \[1, 40, 168\]/,
    );
    const mnist = join(dir, "mnist.npy");
    await Deno.writeFile(
      mnist,
      encodeNpy({ dtype: "uint8", shape: [2, 28, 28], data: new Uint8Array(2 * 784) }),
    );
    await assert.rejects(readNpyInput(mnist), /mnist\.npy: .*got uint8 \[2, 28, 28\]/);
    await assert.rejects(readInput(join(dir, "x.jpg")), /Cannot use .*x\.jpg: expected a \.png/);
  });
});

Deno.test("resizeGray() averages areas when shrinking", () => {
  const src = Uint8Array.from([0, 100, 200, 255, 0, 100, 200, 255]);
  assert.deepEqual(
    resizeGray(src, { width: 4, height: 2 }, { width: 2, height: 1 }),
    Uint8Array.from([50, 228]),
  );
});

/** Runs the predict CLI; returns exit code and output. */
async function runPredict(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "cli", "predict.ts"), ...args],
    cwd: ROOT,
    env: { DIGITSUM_BACKEND: "wasm", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  return {
    code,
    out: new TextDecoder().decode(stdout),
    err: new TextDecoder().decode(stderr),
  };
}

Deno.test({
  name: "deno task predict prints a sum per image and explains it with --explain",
  fn: async () => {
    assert.ok(await exists(join(SHIPPED, "model.json")), `${SHIPPED} is missing`);
    await withTempDir(async (dir) => {
      const { readNpy } = await import("../lib/io/npy.ts");
      const test = await readNpy(join(ROOT, "data", "test_data.npy")).catch(() => null);
      const data = test
        ? (test.data as Uint8Array).slice(0, 2 * IMAGE_SIZE)
        : new Uint8Array(2 * IMAGE_SIZE);
      const path = join(dir, "two.npy");
      await Deno.writeFile(path, encodeNpy({ dtype: "uint8", shape: [2, 40, 168], data }));
      const png = join(dir, "first.png");
      await Deno.writeFile(png, await encodePng(data.subarray(0, IMAGE_SIZE), 168, 40));
      const { code, out, err } = await runPredict([path, png, "--explain"]);
      assert.equal(code, 0, err);
      const sums = [...out.matchAll(/^(\S+): sum (\d+) \(p [\d.]+\)$/gm)];
      assert.deepEqual(sums.map((m) => m[1]), ["two.npy[0]", "two.npy[1]", "first.png"]);
      assert.equal(sums[0][2], sums[2][2], "the PNG of image 0 gets the same sum");
      const readouts = [...out.matchAll(/^ {2}(\d) at columns (\d+)-(\d+) \(centre \d+\)/gm)];
      assert.equal(readouts.length, 12, out);
      const firstFour = readouts.slice(0, 4).reduce((a, m) => a + Number(m[1]), 0);
      assert.equal(firstFour, Number(sums[0][2]));
    });
  },
});

Deno.test("deno task predict fails with a clear message on a bad input", async () => {
  await withTempDir(async (dir) => {
    const bad = join(dir, "bad.npy");
    await Deno.writeTextFile(bad, "garbage");
    const { code, err } = await runPredict([bad]);
    assert.equal(code, 1);
    assert.match(err, /^predict: Cannot read .*bad\.npy: /m);
  });
});

Deno.test("formatExplanation() notes when SumNet sees another number of digits than four", async () => {
  const { formatExplanation } = await import("../lib/training/predict.ts");
  const { digitsSeen } = await import("../lib/models/sumnet/seen.ts");
  // Cells 2, 6, 10 and 14 hold a digit for sure; cell 18 holds one with probability `extra`.
  const reading = (extra: number) => {
    const cells = new Float32Array(21 * 11);
    for (let l = 0; l < 21; l++) cells[l * 11 + 10] = 1;
    for (const l of [2, 6, 10, 14]) [cells[l * 11 + 3], cells[l * 11 + 10]] = [1, 0];
    [cells[18 * 11 + 1], cells[18 * 11 + 10]] = [extra, 1 - extra];
    return {
      sum: 12,
      sumProbability: 1,
      sumDistribution: new Float32Array(37),
      digits: [],
      cells,
    };
  };
  assert.ok(Math.abs(digitsSeen(reading(0.25)) - 4.25) < 1e-6);
  assert.deepEqual(formatExplanation(reading(0.25)), ["  digits:  = 12"]);
  assert.deepEqual(formatExplanation(reading(0.75)), [
    "  digits:  = 12",
    "  note: SumNet sees about 5 digits (4.75); the sum assumes four",
  ]);
  // What the model did to the image before reading it, when it did anything.
  const plain = { ...reading(0.25), prepared: { cleaned: false, scale: 1 } };
  assert.deepEqual(formatExplanation(plain), ["  digits:  = 12"]);
  assert.deepEqual(formatExplanation({ ...plain, prepared: { cleaned: true, scale: 1.5 } }), [
    "  digits:  = 12",
    "  note: a noisy image; SumNet kept only its ink before reading it",
    "  note: digits of an unusual height; SumNet scaled the image 1.50x before reading it " +
    "(columns above are the image's own)",
  ]);
});
