import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { getLoaders, Loader, loadNpyPairLoader, loadTestLoader } from "../lib/data/loader.ts";
import { type DigitSource, loadMnist, writeDataset } from "../lib/data/generate.ts";
import { type NdArray, readNpy, writeNpy } from "../lib/io/npy.ts";
import { legacyPermutation } from "../lib/data/numpy_random.ts";

const PIXELS = 40 * 168;
/** Images per course file in the small generated data set. */
const PER_FILE = 100;
/** The project's data folder (generated from MNIST on first use when absent). */
const REPO_DATA_DIR = new URL("../data", import.meta.url).pathname;

/** MNIST, loaded once. */
let sources: { train: DigitSource; test: DigitSource } | undefined;

/** A small course-format data set (3 x 100 images + 40 test images), made once per run. */
let smallDir: string | undefined;
// Removed when this module's tests end, whichever of them ran (`--filter` included).
globalThis.addEventListener("unload", () => {
  if (smallDir) Deno.removeSync(smallDir, { recursive: true });
});
async function small(): Promise<string> {
  if (!smallDir) {
    sources ??= { train: await loadMnist("train"), test: await loadMnist("test") };
    smallDir = await Deno.makeTempDir({ prefix: "digitsum_data_" });
    await writeDataset(smallDir, {
      sets: ["course", "test"],
      seed: 3,
      imagesPerFile: PER_FILE,
      testCount: 40,
      sources,
    });
  }
  return smallDir;
}

/** The course files of `dir` concatenated, as the study does. */
async function concatenated(dir: string): Promise<{ images: Uint8Array; labels: number[] }> {
  const parts = [];
  const labels: number[] = [];
  for (let i = 0; i < 3; i++) {
    parts.push((await readNpy(join(dir, `data${i}.npy`))).data as Uint8Array);
    labels.push(...Array.from((await readNpy(join(dir, `lab${i}.npy`))).data as Uint8Array));
  }
  const images = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    images.set(p, at);
    at += p.length;
  }
  return { images, labels };
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_data_bad_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("getLoaders() splits the real 30,000 images 24,000/6,000 by NumPy's permutation", async () => {
  const started = performance.now();
  const { train, val } = await getLoaders(0.8, 64, { seed: 0, dataDir: REPO_DATA_DIR });
  console.log(`  loaded 30,000 images in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  assert.equal(train.size, 24000);
  assert.equal(val.size, 6000);
  assert.equal(train.numBatches, 375);
  assert.equal(val.numBatches, 94); // 93 full batches + 48
  const trainIndices = train.indices();
  const valIndices = val.indices();
  // ORIGINAL_STUDY.md test vectors for seed 0.
  assert.deepEqual(
    Array.from(trainIndices.subarray(0, 12)),
    [8225, 10794, 9163, 26591, 6631, 14161, 252, 2566, 3478, 2917, 12775, 29010],
  );
  assert.deepEqual(Array.from(valIndices.subarray(5997)), [9845, 10799, 2732]);
  assert.equal(trainIndices.reduce((a, b) => a + b, 0), 359_863_573);
  // Labels follow the same order as the course's label files.
  const labs: number[] = [];
  for (let i = 0; i < 3; i++) {
    labs.push(...Array.from((await readNpy(join(REPO_DATA_DIR, `lab${i}.npy`))).data, Number));
  }
  const labels = val.labels();
  for (let i = 0; i < val.size; i++) assert.equal(labels[i], labs[valIndices[i]]);
  // Image 0 of the training split is image 8225 of the concatenation, i.e. data0.npy[8225].
  const data0 = (await readNpy(join(REPO_DATA_DIR, "data0.npy"))).data as Uint8Array;
  assert.deepEqual(train.imageAt(0), data0.subarray(8225 * PIXELS, 8226 * PIXELS));
});

Deno.test("getLoaders() orders a small set by legacyPermutation and scales batches to [0, 1]", async () => {
  const dir = await small();
  const { images, labels } = await concatenated(dir);
  const { train, val } = await getLoaders(0.8, 64, { dataDir: dir });
  const perm = legacyPermutation(300, 42);
  assert.equal(train.size, 240);
  assert.equal(val.size, 60);
  assert.deepEqual(train.indices(), perm.subarray(0, 240));
  assert.deepEqual(val.indices(), perm.subarray(240));
  assert.equal(train.numBatches, 4);
  const sizes: number[] = [];
  let seen = 0;
  for (const { x, y, index } of train.batches()) {
    assert.equal(index, sizes.length);
    const b = x.shape[0];
    sizes.push(b);
    assert.deepEqual(x.shape, [b, 40, 168, 1]);
    assert.equal(x.dtype, "float32");
    assert.deepEqual(y.shape, [b]);
    assert.equal(y.dtype, "float32");
    const xs = x.dataSync();
    const ys = y.dataSync();
    for (let i = 0; i < b; i++) {
      const source = perm[seen + i];
      assert.equal(ys[i], labels[source]);
      for (let p = 0; p < PIXELS; p += 7) {
        assert.equal(xs[i * PIXELS + p], Math.fround(images[source * PIXELS + p] / 255));
      }
    }
    seen += b;
    tf.dispose([x, y]);
  }
  assert.deepEqual(sizes, [64, 64, 64, 48]);
  assert.equal(tf.memory().numTensors, 0);
  // Some pixels are exactly 1 and the background exactly 0.
  const first = train.batchArrays(0);
  assert.equal(first.images.reduce((a, b) => Math.max(a, b)), 1);
  assert.equal(first.images.reduce((a, b) => Math.min(a, b)), 0);
  assert.deepEqual(val.labels(), Float32Array.from(perm.subarray(240), (i) => labels[i]));
});

Deno.test("getLoaders() uses the seed and the train fraction like the study", async () => {
  const dir = await small();
  const a = await getLoaders(0.5, 32, { dataDir: dir, seed: 10 });
  assert.equal(a.train.size, 150);
  assert.deepEqual(a.train.indices(), legacyPermutation(300, 10).subarray(0, 150));
  // int(300 * 0.7) = 210 (truncation, like Python's int()).
  const b = await getLoaders(0.7, 32, { dataDir: dir });
  assert.equal(b.train.size, Math.trunc(300 * 0.7));
  const all = await getLoaders(undefined, 50, { dataDir: dir, all: true });
  assert.equal(all.all.size, 300);
  assert.deepEqual(all.all.indices(), legacyPermutation(300, 42));
  assert.equal(all.all.numBatches, 6);
});

Deno.test("getLoaders() limit caps the training split and sizes validation to the limit", async () => {
  const dir = await small();
  const { train, val } = await getLoaders(0.8, 16, { dataDir: dir, limit: 100 });
  const perm = legacyPermutation(300, 42);
  assert.equal(train.size, 100);
  assert.deepEqual(train.indices(), perm.subarray(0, 100));
  assert.equal(val.size, 25); // max(16, ceil(100 / 4))
  assert.deepEqual(val.indices(), perm.subarray(240, 265));
  const tiny = await getLoaders(0.8, 16, { dataDir: dir, limit: 8 });
  assert.equal(tiny.train.size, 8);
  assert.equal(tiny.val.size, 16); // at least one full batch
  await assert.rejects(
    getLoaders(0.8, 16, { dataDir: dir, limit: 0 }),
    /limit must be a positive integer/,
  );
});

Deno.test("Loader batchArrays() and imageAt() agree with batches()", async () => {
  const dir = await small();
  const { val } = await getLoaders(0.8, 25, { dataDir: dir });
  const { images } = await concatenated(dir);
  const last = val.batchArrays(val.numBatches - 1);
  assert.equal(last.size, 10); // 60 = 25 + 25 + 10
  assert.equal(last.images.length, 10 * PIXELS);
  let i = 0;
  for (const { x, y, index } of val.batches()) {
    const arrays = val.batchArrays(index);
    assert.deepEqual(x.dataSync(), arrays.images);
    assert.deepEqual(y.dataSync(), arrays.labels);
    tf.dispose([x, y]);
    i++;
  }
  assert.equal(i, 3);
  const index = val.indices()[7];
  assert.deepEqual(val.imageAt(7), images.subarray(index * PIXELS, (index + 1) * PIXELS));
  assert.throws(() => val.imageAt(60), /Loader val: image 60 outside 0\.\.59/);
  assert.throws(() => val.batchArrays(3), /Loader val: batch 3 outside 0\.\.2/);
});

Deno.test("Loader shuffleEachEpoch reorders deterministically per epoch", async () => {
  const dir = await small();
  const fixed = (await getLoaders(0.8, 64, { dataDir: dir })).train;
  const a = (await getLoaders(0.8, 64, { dataDir: dir, shuffleEachEpoch: true })).train;
  const b = (await getLoaders(0.8, 64, { dataDir: dir, shuffleEachEpoch: true })).train;
  const labelsOf = (loader: Loader, epoch: number) => {
    const out: number[] = [];
    for (let i = 0; i < loader.numBatches; i++) {
      out.push(...loader.batchArrays(i, { epoch }).labels);
    }
    return out;
  };
  const e1 = labelsOf(a, 1);
  const e2 = labelsOf(a, 2);
  assert.deepEqual(e1, labelsOf(b, 1));
  assert.notDeepEqual(e1, e2);
  assert.notDeepEqual(e1, Array.from(fixed.labels()));
  // Same images, another order.
  assert.deepEqual([...e1].sort(), Array.from(fixed.labels()).sort());
  // Without the option every epoch is the same order.
  assert.deepEqual(labelsOf(fixed, 1), labelsOf(fixed, 2));
});

Deno.test("loadTestLoader() reads test_data.npy/test_lab.npy in file order", async () => {
  const dir = await small();
  const loader = await loadTestLoader(16, { dataDir: dir });
  assert.equal(loader.name, "test");
  assert.equal(loader.size, 40);
  assert.equal(loader.numBatches, 3);
  const labels = (await readNpy(join(dir, "test_lab.npy"))).data as Uint8Array;
  assert.deepEqual(loader.labels(), Float32Array.from(labels));
});

Deno.test("loadNpyPairLoader() accepts labels of any supported dtype", async () => {
  const dir = await small();
  await withTempDir(async (tmp) => {
    const labels = (await readNpy(join(dir, "lab1.npy"))).data as Uint8Array;
    const asInt64: NdArray = {
      dtype: "int64",
      shape: [PER_FILE],
      data: BigInt64Array.from(labels, BigInt),
    };
    await writeNpy(join(tmp, "lab_i8.npy"), asInt64);
    const asF64: NdArray = {
      dtype: "float64",
      shape: [PER_FILE, 1],
      data: Float64Array.from(labels),
    };
    await writeNpy(join(tmp, "lab_f8.npy"), asF64);
    for (const name of ["lab_i8.npy", "lab_f8.npy"]) {
      const loader = await loadNpyPairLoader(join(dir, "data1.npy"), join(tmp, name), 64);
      assert.equal(loader.size, PER_FILE);
      assert.deepEqual(loader.labels(), Float32Array.from(labels));
    }
  });
});

Deno.test("loadNpyPairLoader() rejects malformed files, naming the file and the problem", async () => {
  await withTempDir(async (tmp) => {
    const images = (n: number, w = 168): NdArray => ({
      dtype: "uint8",
      shape: [n, 40, w],
      data: new Uint8Array(n * 40 * w),
    });
    const labels = (n: number): NdArray => ({
      dtype: "uint8",
      shape: [n],
      data: new Uint8Array(n),
    });
    const p = (name: string) => join(tmp, name);
    await writeNpy(p("good.npy"), images(4));
    await writeNpy(p("good_lab.npy"), labels(4));
    await writeNpy(p("narrow.npy"), images(4, 160));
    await writeNpy(p("float.npy"), {
      dtype: "float32",
      shape: [4, 40, 168],
      data: new Float32Array(4 * PIXELS),
    });
    await writeNpy(p("short_lab.npy"), labels(3));
    await writeNpy(p("matrix_lab.npy"), { dtype: "uint8", shape: [4, 2], data: new Uint8Array(8) });
    await writeNpy(p("nan_lab.npy"), {
      dtype: "float32",
      shape: [4],
      data: Float32Array.from([1, 2, NaN, 4]),
    });
    await Deno.writeTextFile(p("text.npy"), "not an npy file at all");
    const cases: [string, string, RegExp][] = [
      [
        "narrow.npy",
        "good_lab.npy",
        /Cannot read .*narrow\.npy: expected uint8 images of shape \[N, 40, 168\], got uint8 \[4, 40, 160\]/,
      ],
      [
        "float.npy",
        "good_lab.npy",
        /Cannot read .*float\.npy: expected uint8 images .* got float32 \[4, 40, 168\]/,
      ],
      [
        "good.npy",
        "short_lab.npy",
        /Cannot read .*short_lab\.npy: 3 labels for 4 images in .*good\.npy/,
      ],
      [
        "good.npy",
        "matrix_lab.npy",
        /Cannot read .*matrix_lab\.npy: expected labels of shape \[N\], got uint8 \[4, 2\]/,
      ],
      [
        "good.npy",
        "nan_lab.npy",
        /Cannot read .*nan_lab\.npy: label 2 is NaN, not a sum of four digits \(an integer 0..36\)/,
      ],
      ["text.npy", "good_lab.npy", /Cannot read .*text\.npy: /],
      ["missing.npy", "good_lab.npy", /Cannot read .*missing\.npy: /],
    ];
    for (const [imagesName, labelsName, pattern] of cases) {
      await assert.rejects(
        loadNpyPairLoader(p(imagesName), p(labelsName)),
        pattern,
        `${imagesName} + ${labelsName}`,
      );
    }
  });
});

Deno.test("getLoaders() names the course file that is malformed", async () => {
  const dir = await small();
  await withTempDir(async (tmp) => {
    for (
      const name of [
        "data0.npy",
        "data2.npy",
        "lab0.npy",
        "lab1.npy",
        "lab2.npy",
        "test_data.npy",
        "test_lab.npy",
      ]
    ) {
      await Deno.copyFile(join(dir, name), join(tmp, name));
    }
    await writeNpy(join(tmp, "data1.npy"), {
      dtype: "uint8",
      shape: [PER_FILE, 40, 84],
      data: new Uint8Array(PER_FILE * 40 * 84),
    });
    await assert.rejects(
      getLoaders(0.8, 64, { dataDir: tmp }),
      /Cannot read .*data1\.npy: expected uint8 images of shape \[N, 40, 168\], got uint8 \[100, 40, 84\]/,
    );
  });
});

Deno.test("getLoaders() rejects bad arguments", async () => {
  await assert.rejects(getLoaders(1.5, 64), /trainFraction must be in 0\.\.1, got 1\.5/);
  await assert.rejects(getLoaders(0.8, 0), /batch size must be a positive integer, got 0/);
});
