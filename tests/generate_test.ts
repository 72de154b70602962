import assert from "node:assert/strict";
import { join } from "node:path";
import {
  COURSE_IMAGE_FILES,
  COURSE_LABEL_FILES,
  type DigitSource,
  ensureDataset,
  fileSeed,
  generateComposites,
  loadMnist,
  MANIFEST_FILE,
  readManifest,
  renderSampleGrid,
  TEST_FILES,
  writeDataset,
} from "../lib/data/generate.ts";
import { readNpy } from "../lib/io/npy.ts";
import { decodePng, encodePng } from "../lib/io/png.ts";

const H = 40;
const W = 168;
const PIXELS = H * W;

/** MNIST, loaded once for all tests. */
const mnist: { train?: DigitSource; test?: DigitSource } = {};
async function train(): Promise<DigitSource> {
  return mnist.train ??= await loadMnist("train");
}
async function test(): Promise<DigitSource> {
  return mnist.test ??= await loadMnist("test");
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_generate_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("loadMnist() reads MNIST's 60,000 training and 10,000 test digits", async () => {
  const tr = await train();
  const te = await test();
  assert.equal(tr.count, 60000);
  assert.equal(te.count, 10000);
  assert.equal(tr.images.length, 60000 * 784);
  assert.equal(tr.name, "mnist-train");
  assert.equal(te.name, "mnist-test");
  // MNIST's first training label is 5, first test label is 7.
  assert.equal(tr.labels[0], 5);
  assert.equal(te.labels[0], 7);
});

Deno.test("generateComposites() returns well-formed images whose label is the sum of the placed digits", async () => {
  const source = await train();
  const n = 300;
  const made = generateComposites(source, { count: n, seed: 3 });
  assert.ok(made.images instanceof Uint8Array);
  assert.equal(made.images.length, n * PIXELS);
  assert.equal(made.labels.length, n);
  assert.equal(made.digits.length, n * 4);
  assert.equal(made.sources.length, n * 4);
  assert.equal(made.boxes.length, n * 16);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let k = 0; k < 4; k++) {
      const digit = made.digits[i * 4 + k];
      const index = made.sources[i * 4 + k];
      assert.ok(index >= 0 && index < source.count);
      // The recorded digit is the class of the source image actually used.
      assert.equal(source.labels[index], digit);
      sum += digit;
    }
    assert.equal(made.labels[i], sum);
    assert.ok(made.labels[i] <= 36);
  }
});

Deno.test("generateComposites() draws every digit inside the image, with visible ink in its box", async () => {
  const made = generateComposites(await train(), { count: 200, seed: 11 });
  for (let i = 0; i < 200; i++) {
    const xs: number[] = [];
    for (let k = 0; k < 4; k++) {
      const b = (i * 4 + k) * 4;
      const [x, y, w, h] = made.boxes.subarray(b, b + 4);
      xs.push(x);
      assert.ok(x >= 0 && x + w <= W, `box x=${x} w=${w} outside the width`);
      assert.ok(y >= 0 && y + h <= H, `box y=${y} h=${h} outside the height`);
      let peak = 0;
      let ink = 0;
      for (let r = y; r < y + h; r++) {
        for (let c = x; c < x + w; c++) {
          const v = made.images[i * PIXELS + r * W + c];
          peak = Math.max(peak, v);
          if (v > 100) ink++;
        }
      }
      assert.ok(peak > 200 && ink >= 15, `composite ${i} digit ${k}: peak ${peak}, ink ${ink}`);
    }
    // Left to right.
    for (let k = 1; k < 4; k++) assert.ok(xs[k] >= xs[k - 1]);
  }
});

Deno.test("generateComposites() at native size places the source digit's exact pixels", async () => {
  // With 28 px boxes there is no resampling: every composite pixel inside a box is at least
  // the source digit's pixel, and equal to it where no other box overlaps.
  const source = await train();
  const made = generateComposites(source, {
    count: 100,
    seed: 5,
    layout: { boxMin: 28, boxMax: 28 },
  });
  let exactPixels = 0;
  for (let i = 0; i < 100; i++) {
    const boxes = Array.from(
      { length: 4 },
      (_, k) => made.boxes.subarray((i * 4 + k) * 4, (i * 4 + k) * 4 + 4),
    );
    for (let k = 0; k < 4; k++) {
      const [x, y] = boxes[k];
      const digit = source.images.subarray(
        made.sources[i * 4 + k] * 784,
        made.sources[i * 4 + k] * 784 + 784,
      );
      for (let r = 0; r < 28; r++) {
        for (let c = 0; c < 28; c++) {
          const v = made.images[i * PIXELS + (y + r) * W + x + c];
          assert.ok(v >= digit[r * 28 + c]);
          const shared = boxes.some((o, j) =>
            j !== k && x + c >= o[0] && x + c < o[0] + o[2] && y + r >= o[1] && y + r < o[1] + o[3]
          );
          if (!shared) {
            assert.equal(v, digit[r * 28 + c]);
            exactPixels++;
          }
        }
      }
    }
  }
  assert.ok(exactPixels > 100 * 4 * 784 * 0.5);
});

Deno.test("generateComposites() is deterministic for a seed and differs across seeds", async () => {
  const source = await train();
  const a = generateComposites(source, { count: 50, seed: 9 });
  const b = generateComposites(source, { count: 50, seed: 9 });
  const c = generateComposites(source, { count: 50, seed: 10 });
  assert.deepEqual(a.images, b.images);
  assert.deepEqual(a.labels, b.labels);
  assert.deepEqual(a.sources, b.sources);
  assert.notDeepEqual(a.images, c.images);
  assert.notDeepEqual(a.sources, c.sources);
});

Deno.test("generateComposites() gives uniform digits and a bell-shaped sum histogram (10,000 images)", async () => {
  const source = await train();
  const started = performance.now();
  const made = generateComposites(source, { count: 10000, seed: 1 });
  const seconds = (performance.now() - started) / 1000;
  console.log(`  generated 10,000 composites in ${seconds.toFixed(2)} s`);
  const perDigit = new Array(10).fill(0);
  for (const d of made.digits) perDigit[d]++;
  for (const count of perDigit) assert.ok(Math.abs(count - 4000) < 300, `digit counts ${perDigit}`);
  const histogram = new Array(37).fill(0);
  let mean = 0;
  for (const label of made.labels) {
    histogram[label]++;
    mean += label / 10000;
  }
  assert.ok(Math.abs(mean - 18) < 0.3, `mean sum ${mean}`);
  // Peak near 18, tails thin: P(sum=18) for 4 uniform digits is 6.7%, P(sum<=3) is 0.35%.
  assert.ok(histogram[18] > 550 && histogram[18] < 800, `P(18) count ${histogram[18]}`);
  assert.ok(histogram[0] + histogram[1] + histogram[2] + histogram[3] < 80);
  // Each source digit is used once before any is reused: 40,000 draws from 60,000 digits.
  const uses = new Uint8Array(source.count);
  for (const s of made.sources) uses[s]++;
  assert.ok(uses.every((u) => u <= 1));
});

Deno.test("generateComposites() rejects bad sources and options", () => {
  const tiny: DigitSource = {
    images: new Uint8Array(784 * 10),
    labels: Uint8Array.from({ length: 10 }, (_, i) => i),
    count: 10,
    name: "tiny",
  };
  assert.throws(
    () => generateComposites({ ...tiny, count: 11 }, { count: 1, seed: 1 }),
    /tiny: expected 11 x 28 x 28 = 8624 image bytes, got 7840/,
  );
  assert.throws(
    () =>
      generateComposites({ ...tiny, labels: new Uint8Array(10).fill(3) }, { count: 1, seed: 1 }),
    /tiny: has no digit 0/,
  );
  assert.throws(
    () => generateComposites(tiny, { count: -1, seed: 1 }),
    /count must be a non-negative integer/,
  );
  assert.throws(
    () => generateComposites(tiny, { count: 1, seed: 1, layout: { boxMax: 50 } }),
    /invalid layout/,
  );
});

Deno.test("writeDataset() builds course files only from MNIST train and test files only from MNIST test", async () => {
  await withTempDir(async (dir) => {
    const seed = 4;
    const manifest = await writeDataset(dir, {
      sets: ["course", "test"],
      seed,
      imagesPerFile: 40,
      testCount: 30,
    });
    const tr = await train();
    const te = await test();
    for (let i = 0; i < 3; i++) {
      const images = await readNpy(join(dir, COURSE_IMAGE_FILES[i]));
      const labels = await readNpy(join(dir, COURSE_LABEL_FILES[i]));
      assert.equal(images.dtype, "uint8");
      assert.deepEqual(images.shape, [40, 40, 168]);
      assert.equal(labels.dtype, "uint8");
      assert.deepEqual(labels.shape, [40]);
      // The file is exactly the composites of MNIST *training* digits for its seed...
      const expected = generateComposites(tr, {
        count: 40,
        seed: fileSeed(seed, COURSE_IMAGE_FILES[i]),
      });
      assert.deepEqual(images.data, expected.images);
      assert.deepEqual(labels.data, expected.labels);
      // ...and not what the test digits would give.
      const fromTest = generateComposites(te, {
        count: 40,
        seed: fileSeed(seed, COURSE_IMAGE_FILES[i]),
      });
      assert.notDeepEqual(images.data, fromTest.images);
      assert.equal(manifest.files[COURSE_IMAGE_FILES[i]].source, "mnist-train");
    }
    const testImages = await readNpy(join(dir, TEST_FILES.images));
    const testLabels = await readNpy(join(dir, TEST_FILES.labels));
    assert.deepEqual(testImages.shape, [30, 40, 168]);
    const expected = generateComposites(te, { count: 30, seed: fileSeed(seed, TEST_FILES.images) });
    assert.deepEqual(testImages.data, expected.images);
    assert.deepEqual(testLabels.data, expected.labels);
    assert.ok(expected.sources.every((s) => s < te.count));
    assert.equal(manifest.files[TEST_FILES.images].source, "mnist-test");
    // The manifest records every file's sha256 and is on disk.
    const onDisk = await readManifest(join(dir, MANIFEST_FILE));
    assert.deepEqual(onDisk, manifest);
    for (const [name, entry] of Object.entries(manifest.files)) {
      assert.equal(entry.status, "done");
      const bytes = await Deno.readFile(join(dir, name));
      assert.equal(entry.sha256, await sha256Hex(bytes), name);
      assert.equal(entry.bytes, bytes.length);
      assert.equal(entry.seed, seed);
    }
    assert.equal(Object.keys(manifest.files).length, 8);
  });
});

Deno.test("ensureDataset() generates all eight files into an empty folder, then does nothing", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const first = await ensureDataset(dir, {
      imagesPerFile: 20,
      testCount: 10,
      log: (l) => lines.push(l),
    });
    assert.equal(first.generated, true);
    assert.equal(first.files.length, 8);
    for (
      const f of [
        ...COURSE_IMAGE_FILES,
        ...COURSE_LABEL_FILES,
        TEST_FILES.images,
        TEST_FILES.labels,
      ]
    ) {
      assert.ok((await Deno.stat(join(dir, f))).isFile, f);
    }
    assert.ok(lines.some((l) => l.includes("generating course + test")));
    const before = await Deno.readFile(join(dir, "data1.npy"));
    const second = await ensureDataset(dir, { imagesPerFile: 20, testCount: 10 });
    assert.deepEqual(second, { generated: false, files: [] });
    assert.deepEqual(await Deno.readFile(join(dir, "data1.npy")), before);
  });
});

Deno.test("ensureDataset() keeps present course files and writes only the missing test pair", async () => {
  await withTempDir(async (dir) => {
    await writeDataset(dir, {
      sets: ["course"],
      seed: 2,
      imagesPerFile: 15,
      sources: { train: await train() },
    });
    // Pretend these are the course's real files: no manifest.
    await Deno.remove(join(dir, MANIFEST_FILE));
    const course = await Promise.all(COURSE_IMAGE_FILES.map((f) => Deno.readFile(join(dir, f))));
    const result = await ensureDataset(dir, { testCount: 12, sources: { test: await test() } });
    assert.deepEqual(result, { generated: true, files: [TEST_FILES.images, TEST_FILES.labels] });
    const after = await Promise.all(COURSE_IMAGE_FILES.map((f) => Deno.readFile(join(dir, f))));
    assert.deepEqual(after, course);
    assert.deepEqual((await readNpy(join(dir, TEST_FILES.images))).shape, [12, 40, 168]);
    const manifest = await readManifest(join(dir, MANIFEST_FILE));
    assert.deepEqual(
      Object.keys(manifest!.files).sort(),
      [TEST_FILES.images, TEST_FILES.labels].sort(),
    );
  });
});

Deno.test("ensureDataset() refuses to complete a partial set it did not write", async () => {
  await withTempDir(async (dir) => {
    await writeDataset(dir, {
      sets: ["course", "test"],
      imagesPerFile: 5,
      testCount: 5,
      sources: { train: await train(), test: await test() },
    });
    await Deno.remove(join(dir, MANIFEST_FILE));
    await Deno.remove(join(dir, "lab1.npy"));
    await assert.rejects(
      ensureDataset(dir),
      /Cannot use data folder .*: it has data0\.npy, data1\.npy, data2\.npy, lab0\.npy, lab2\.npy but lacks lab1\.npy, and the present files were not written by the generator/,
    );
  });
});

Deno.test("ensureDataset() regenerates a partial set that its manifest records", async () => {
  await withTempDir(async (dir) => {
    await writeDataset(dir, {
      sets: ["course", "test"],
      imagesPerFile: 5,
      testCount: 5,
      sources: { train: await train(), test: await test() },
    });
    await Deno.remove(join(dir, "data2.npy"));
    const result = await ensureDataset(dir, {
      imagesPerFile: 5,
      testCount: 5,
      sources: { train: await train(), test: await test() },
    });
    assert.equal(result.generated, true);
    assert.equal(result.files.length, 6);
    assert.deepEqual((await readNpy(join(dir, "data2.npy"))).shape, [5, 40, 168]);
  });
});

Deno.test("renderSampleGrid() lays out 20 images under their labels", async () => {
  const made = generateComposites(await train(), { count: 20, seed: 1 });
  const grid = renderSampleGrid(made.images, made.labels, { count: 20, columns: 4, scale: 1 });
  const png = await decodePng(await encodePng(grid.gray, grid.width, grid.height), "grid.png");
  assert.equal(png.width, 4 * (168 + 6) + 6);
  assert.equal(png.height, 5 * (40 + 9 + 6) + 6);
  // The first image sits at (6, 6 + 9), pixel for pixel.
  for (let y = 0; y < 40; y++) {
    for (let x = 0; x < 168; x++) {
      assert.equal(png.data[(15 + y) * png.width + 6 + x], made.images[y * 168 + x]);
    }
  }
});

Deno.test("cli/generate.ts --test-only writes a second test set elsewhere and never overwrites foreign files", async () => {
  await withTempDir(async (dir) => {
    const run = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../cli/generate.ts", import.meta.url).pathname, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const ok = await run("--test-only", "--seed", "7", "--data-dir", dir, "--test-count", "25");
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), [MANIFEST_FILE, TEST_FILES.images, TEST_FILES.labels].sort());
    const labels = await readNpy(join(dir, TEST_FILES.labels));
    const expected = generateComposites(await test(), {
      count: 25,
      seed: fileSeed(7, TEST_FILES.images),
    });
    assert.deepEqual(labels.data, expected.labels);

    await Deno.remove(join(dir, MANIFEST_FILE));
    const refused = await run("--test-only", "--force", "--data-dir", dir, "--test-count", "5");
    assert.equal(refused.code, 1);
    assert.match(
      new TextDecoder().decode(refused.stderr),
      /Refusing to overwrite .*test_data\.npy.*not written by the generator/,
    );
  });
});
