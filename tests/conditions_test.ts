import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import { loadCheckpoint } from "../lib/training/checkpoint.ts";
import {
  applyEffects,
  CONDITION_FILES,
  conditionByName,
  CONDITIONS,
  CONDITIONS_INDEX,
  digitGeometry,
  generateCondition,
  readConditions,
  REFERENCE,
  writeConditions,
} from "../lib/data/conditions.ts";
import {
  type Composites,
  type DigitSource,
  drawDigitPicks,
  generateComposites,
  loadMnist,
  MANIFEST_FILE,
  sha256Hex,
} from "../lib/data/generate.ts";
import { readNpy } from "../lib/io/npy.ts";
import {
  evaluateConditions,
  readConditionsReport,
  tallyReadout,
  wilsonInterval,
} from "../lib/results/readout.ts";
import { explainBatch } from "../lib/models/sumnet/mod.ts";
import { predictBatch } from "../lib/training/train.ts";

const H = 40;
const W = 168;
const PIXELS = H * W;
/** Composites per condition in these tests: enough for medians and means, fast to draw. */
const N = 200;
const SEED = 5;
const SHIPPED = new URL("../trained_models/sumnet", import.meta.url).pathname;

await initBackend("wasm", { quiet: true });

let mnistTest: DigitSource | undefined;
async function testDigits(): Promise<DigitSource> {
  return mnistTest ??= await loadMnist("test");
}

/** Each condition drawn once (same digits, `N` composites, seed `SEED`). */
const drawn = new Map<string, Composites>();
async function draw(name: string): Promise<Composites> {
  if (!drawn.has(name)) {
    const source = await testDigits();
    const picks = drawDigitPicks(source, { count: N, seed: SEED });
    drawn.set(
      name,
      generateCondition(source, conditionByName(name), { count: N, seed: SEED, picks }),
    );
  }
  return drawn.get(name)!;
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_conditions_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Whether column `x` of composite `n` holds any ink (pixel above 0). */
function columnHasInk(images: Uint8Array, n: number, x: number): boolean {
  for (let y = 0; y < H; y++) if (images[n * PIXELS + y * W + x] > 0) return true;
  return false;
}

/**
 * Groups of consecutive inked columns of composite `n`, measured on the pixels only: their
 * column ranges, ink heights (rows with ink) and the empty runs between them.
 */
function inkClusters(images: Uint8Array, n: number) {
  const clusters: { left: number; right: number; height: number }[] = [];
  for (let x = 0; x < W; x++) {
    if (!columnHasInk(images, n, x)) continue;
    const last = clusters.at(-1);
    if (last && last.right === x) last.right = x + 1;
    else clusters.push({ left: x, right: x + 1, height: 0 });
  }
  for (const c of clusters) {
    let top = H;
    let bottom = 0;
    for (let y = 0; y < H; y++) {
      for (let x = c.left; x < c.right; x++) {
        if (images[n * PIXELS + y * W + x] > 0) {
          top = Math.min(top, y);
          bottom = y + 1;
        }
      }
    }
    c.height = bottom - top;
  }
  const gaps = clusters.slice(1).map((c, i) => c.left - clusters[i].right);
  return { clusters, gaps };
}

/** Mean length of horizontal runs of pixels >= 128: a stroke-width measure. */
function meanRunLength(images: Uint8Array): number {
  let runs = 0;
  let pixels = 0;
  for (let row = 0; row < images.length / W; row++) {
    let inRun = false;
    for (let x = 0; x < W; x++) {
      const ink = images[row * W + x] >= 128;
      if (ink) pixels++;
      if (ink && !inRun) runs++;
      inRun = ink;
    }
  }
  return pixels / runs;
}

Deno.test("generateComposites() draws the default layout exactly as before the condition options", async () => {
  // sha256 of what lib/generate.ts drew before the options existed (commit 41eec04).
  const made = generateComposites(await testDigits(), { count: 50, seed: 3 });
  assert.equal(
    await sha256Hex(made.images),
    "6c0e335c2bd1acc362366079b78c3a34d213986e15ab2c50965e439500e340d1",
  );
  assert.equal(
    await sha256Hex(new Uint8Array(made.boxes.buffer)),
    "45f42e1643020d82d98cf633893f43dcd65a3ddc75f3c20c4b5f136d66184f62",
  );
  const custom = generateComposites(await loadMnist("train"), {
    count: 50,
    seed: 9,
    layout: { boxMin: 20, boxMax: 40, stepMin: 5, stepMax: 60 },
  });
  assert.equal(
    await sha256Hex(custom.images),
    "e781561deeed5beea074e75deb85e7ced713ab1e1110a2e0a29d71feabb4a506",
  );
});

Deno.test("generateComposites() records ink boxes that bound exactly the pixels drawn", async () => {
  const made = await draw("gaps-wide");
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < 4; k++) {
      const b = (n * 4 + k) * 4;
      const [left, top, right, bottom] = made.ink.subarray(b, b + 4);
      assert.ok(left >= 0 && right <= W && top >= 0 && bottom <= H && left < right && top < bottom);
      // Digits stand at least 18 columns apart here: the columns beside a box are empty, its
      // edge columns are not.
      assert.ok(columnHasInk(made.images, n, left) && columnHasInk(made.images, n, right - 1));
      if (left > 0) assert.ok(!columnHasInk(made.images, n, left - 1), `composite ${n} digit ${k}`);
      if (right < W) assert.ok(!columnHasInk(made.images, n, right));
    }
  }
});

Deno.test("conditions are deterministic for a seed, differ across seeds and share their digits", async () => {
  const source = await testDigits();
  for (const name of ["reference", "overlapping", "noise"]) {
    const condition = conditionByName(name);
    const a = generateCondition(source, condition, { count: 30, seed: 1 });
    const b = generateCondition(source, condition, { count: 30, seed: 1 });
    const c = generateCondition(source, condition, { count: 30, seed: 2 });
    assert.deepEqual(a.images, b.images, name);
    assert.notDeepEqual(a.images, c.images, name);
  }
  // Every condition holds the same digits; conditions with image effects only are the
  // reference's composites with the effect applied.
  const reference = await draw(REFERENCE);
  for (const condition of CONDITIONS) {
    const made = await draw(condition.name);
    assert.deepEqual(made.digits, reference.digits, condition.name);
    assert.deepEqual(made.labels, reference.labels, condition.name);
    const effectsOnly = Object.keys(condition.layout).length === 0;
    assert.equal(made.boxes.every((v, i) => v === reference.boxes[i]), effectsOnly, condition.name);
    assert.equal(
      made.images.every((v, i) => v === reference.images[i]),
      condition === CONDITIONS[0],
    );
  }
});

Deno.test("scale conditions change the digits' measured ink height and width as named", async () => {
  const heights = async (name: string) => {
    const made = await draw(name);
    const out: number[] = [];
    for (let n = 0; n < N; n++) {
      out.push(...inkClusters(made.images, n).clusters.map((c) => c.height));
    }
    return out;
  };
  const widths = async (name: string) => {
    const made = await draw(name);
    const out: number[] = [];
    for (let n = 0; n < N; n++) {
      out.push(...inkClusters(made.images, n).clusters.map((c) => c.right - c.left));
    }
    return out;
  };
  // Measured on the pixels: conditions with gaps of 1+ px separate into 4 groups of columns.
  const small = median(await heights("scale-small"));
  const course = await heights("scale-course");
  const large = median(await heights("scale-large"));
  assert.ok(small >= 11 && small <= 15, `scale-small: median ink height ${small}`);
  assert.ok(large >= 30 && large <= 35, `scale-large: median ink height ${large}`);
  const sorted = [...course].sort((a, b) => a - b);
  const p10 = sorted[Math.floor(0.1 * sorted.length)];
  const p90 = sorted[Math.floor(0.9 * sorted.length)];
  assert.ok(p10 <= 18 && p90 >= 28, `scale-course: ink heights ${p10}..${p90} (10th-90th)`);
  // Narrow < square < wide, at the same heights (gaps-tight draws square boxes of 27-31 px).
  const narrow = median(await widths("narrow"));
  const square = median(await widths("gaps-tight"));
  const wide = median(await widths("wide"));
  assert.ok(narrow < square - 2 && square < wide - 3, `widths ${narrow} ${square} ${wide}`);
});

Deno.test("spacing conditions set the measured gaps between digits", async () => {
  const stats = async (name: string) => {
    const made = await draw(name);
    const gaps: number[] = [];
    const spans: number[] = [];
    let joined = 0;
    for (let n = 0; n < N; n++) {
      const { clusters, gaps: g } = inkClusters(made.images, n);
      gaps.push(...g);
      spans.push(clusters.at(-1)!.right - clusters[0].left);
      if (clusters.length === 1) joined++;
    }
    return { gaps, span: mean(spans), joined: joined / N };
  };
  const wide = await stats("gaps-wide");
  assert.ok(wide.gaps.filter((g) => g >= 18 && g <= 30).length >= 0.95 * 3 * N, "gaps-wide");
  const tight = await stats("gaps-tight");
  assert.ok(tight.gaps.filter((g) => g >= 1 && g <= 3).length >= 0.95 * 3 * N, "gaps-tight");
  const touching = await stats("touching");
  const overlapping = await stats("overlapping");
  // Touching and overlapping digits leave no empty column between them.
  assert.ok(touching.joined >= 0.95, `touching: ${touching.joined} joined`);
  assert.ok(overlapping.joined >= 0.95, `overlapping: ${overlapping.joined} joined`);
  // The same digits take less room the closer they stand.
  assert.ok(
    overlapping.span < touching.span - 4 && touching.span < tight.span - 3 &&
      tight.span < wide.span - 40,
    `spans ${overlapping.span} ${touching.span} ${tight.span} ${wide.span}`,
  );
});

Deno.test("jitter-vertical moves digits to the image's top and bottom edges", async () => {
  const edgeShare = async (name: string) => {
    const made = await draw(name);
    let touching = 0;
    for (let n = 0; n < N; n++) {
      let edge = false;
      for (let x = 0; x < W; x++) {
        if (made.images[n * PIXELS + x] > 0 || made.images[n * PIXELS + (H - 1) * W + x] > 0) {
          edge = true;
        }
      }
      if (edge) touching++;
    }
    return touching / N;
  };
  const reference = await edgeShare(REFERENCE);
  const jitter = await edgeShare("jitter-vertical");
  assert.ok(reference < 0.05 && jitter > 0.3, `ink on the edge rows: ${reference} vs ${jitter}`);
});

Deno.test("image effects change stroke width, sharpness, intensity and noise as named", async () => {
  const reference = await draw(REFERENCE);
  const thin = await draw("stroke-thin");
  const thick = await draw("stroke-thick");
  const runs = [thin, reference, thick].map((m) => meanRunLength(m.images));
  assert.ok(runs[0] < runs[1] - 0.3 && runs[1] < runs[2] - 1, `stroke widths ${runs}`);

  // Blur: smaller differences between neighbouring pixels, the same total ink (about).
  const roughness = (images: Uint8Array) => {
    let total = 0;
    for (let p = 0; p + 1 < images.length; p++) total += Math.abs(images[p + 1] - images[p]);
    return total / images.length;
  };
  const blur = await draw("blur");
  const sharpness = roughness(blur.images) / roughness(reference.images);
  // Measured: 0.74 (MNIST's strokes are smooth already); 1 would be no blur.
  assert.ok(sharpness < 0.8, `blur keeps ${sharpness} of the differences between neighbours`);
  const ink = (images: Uint8Array) => images.reduce((a, v) => a + v, 0);
  assert.ok(Math.abs(ink(blur.images) / ink(reference.images) - 1) < 0.03);

  const faint = await draw("faint");
  const peak = (images: Uint8Array) => images.reduce((a, v) => Math.max(a, v), 0);
  assert.equal(peak(reference.images), 255);
  assert.equal(peak(faint.images), 128);

  // Noise: on the black background, max(0, N(0, 32)) has mean 32 / sqrt(2 pi) = 12.8.
  const noise = await draw("noise");
  const background: number[] = [];
  for (let p = 0; p < reference.images.length; p += 7) {
    if (reference.images[p] === 0) background.push(noise.images[p]);
  }
  const m = mean(background);
  assert.ok(m > 11.8 && m < 13.8, `mean noise on the background ${m}`);
});

Deno.test("applyEffects() rejects invalid effects, naming them", () => {
  assert.throws(() => applyEffects(new Uint8Array(PIXELS), { stroke: 0.5 }, 1), /invalid effects/);
  assert.throws(() => applyEffects(new Uint8Array(10), {}, 1), /not whole 40 x 168 images/);
  assert.throws(
    () => conditionByName("sideways"),
    /Unknown condition 'sideways'; known: reference/,
  );
});

Deno.test("writeConditions() writes course-format files, manifests and fingerprints; readConditions() checks them", async () => {
  await withTempDir(async (dir) => {
    const index = await writeConditions(dir, {
      count: 12,
      seed: 3,
      names: ["reference", "blur"],
      source: await testDigits(),
    });
    assert.deepEqual(index.conditions.map((c) => c.name), ["reference", "blur"]);
    const sets = await readConditions(dir);
    for (const set of sets) {
      const images = await readNpy(join(set.dir, CONDITION_FILES.images));
      const labels = await readNpy(join(set.dir, CONDITION_FILES.labels));
      const digits = await readNpy(join(set.dir, CONDITION_FILES.digits));
      const ink = await readNpy(join(set.dir, CONDITION_FILES.ink));
      assert.deepEqual(images.shape, [12, H, W]);
      assert.deepEqual(digits.shape, [12, 4]);
      assert.deepEqual(ink.shape, [12, 4, 4]);
      for (let n = 0; n < 12; n++) {
        const sum = [0, 1, 2, 3].reduce((a, k) => a + Number(digits.data[n * 4 + k]), 0);
        assert.equal(Number(labels.data[n]), sum);
      }
      // The manifest's hashes are the files' and the fingerprint covers them.
      for (const [file, entry] of Object.entries(set.manifest.files)) {
        assert.equal(entry.sha256, await sha256Hex(await Deno.readFile(join(set.dir, file))));
      }
      assert.equal(set.manifest.condition.count, 12);
      assert.equal(set.manifest.condition.source, "mnist-test");
      // The same as generating in memory.
      const again = generateCondition(await testDigits(), conditionByName(set.name), {
        count: 12,
        seed: 3,
      });
      assert.deepEqual(images.data, again.images);
    }
    // A changed manifest is refused, by name.
    const path = join(dir, "blur", MANIFEST_FILE);
    const manifest = JSON.parse(await Deno.readTextFile(path));
    manifest.condition.fingerprint = "0".repeat(64);
    await Deno.writeTextFile(path, JSON.stringify(manifest));
    await assert.rejects(
      () => readConditions(dir),
      /blur\/MANIFEST\.json: its fingerprint differs/,
    );
    await assert.rejects(
      () => readConditions(join(dir, "nothing")),
      new RegExp(`Cannot read .*${CONDITIONS_INDEX}.*deno task generate --conditions`),
    );
  });
});

Deno.test("wilsonInterval() and tallyReadout() compute the textbook numbers", () => {
  // Wilson 95% for 0/10 is [0, 27.75%]; for 9723/10000 about [96.89, 97.54]%.
  const [lo0, hi0] = wilsonInterval({ correct: 0, total: 10 });
  assert.equal(lo0, 0);
  assert.ok(Math.abs(hi0 - 27.75) < 0.01, String(hi0));
  const [lo, hi] = wilsonInterval({ correct: 9723, total: 10000 });
  assert.ok(Math.abs(lo - 96.89) < 0.01 && Math.abs(hi - 97.54) < 0.01, `${lo} ${hi}`);

  // Two composites; the second's digits are placed right to left (generator order 3, 2, 1, 0).
  const ink = [
    [0, 5, 10, 25, 12, 5, 20, 25, 20, 5, 30, 25, 40, 2, 50, 36], // gaps 2, 0, 10; heights 20, 34
    [90, 5, 100, 25, 60, 5, 70, 25, 30, 8, 40, 20, 0, 8, 10, 20], // gaps 20; heights 12
  ].flat();
  const result = tallyReadout({
    read: [[1, 2, 3, 4], [7, 6, 5, 5]],
    predicted: [10, 23],
    labels: [10, 22],
    digits: [1, 2, 3, 4, 4, 5, 6, 7],
    ink,
  });
  assert.deepEqual(result.positions.map((t) => t.correct), [2, 2, 2, 1]);
  assert.deepEqual(result.digits, { correct: 7, total: 8 });
  assert.deepEqual(result.allFour, { correct: 1, total: 2 });
  assert.equal(result.sumRightDigitsWrong, 0);
  // Digits by nearest gap: 2 (close), 0 (touching), 0, 10 (far); 20 x 4 (far) with one wrong.
  assert.deepEqual(result.byGap.map((b) => b.digits.total), [0, 2, 1, 0, 5]);
  assert.deepEqual(result.byGap.map((b) => b.digits.correct), [0, 2, 1, 0, 4]);
  // Composites by smallest gap: touching (right), far (wrong).
  assert.deepEqual(result.byGap.map((b) => b.sums.correct), [0, 1, 0, 0, 0]);
  assert.deepEqual(result.byGap.map((b) => b.sums.total), [0, 1, 0, 0, 1]);
  assert.deepEqual(result.byHeight.map((b) => b.digits.total), [2, 0, 5, 0, 0, 1]);
  assert.deepEqual(digitGeometry(ink, 1).order, [3, 2, 1, 0]);
});

Deno.test("deno task evaluate --conditions equals a direct computation with the shipped SumNet", async () => {
  await withTempDir(async (dir) => {
    const set = join(dir, "set");
    await writeConditions(set, {
      count: 40,
      seed: 8,
      names: ["reference", "overlapping"],
      source: await testDigits(),
    });
    const out = join(dir, "report");
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli/evaluate.ts",
        "--model",
        SHIPPED,
        "--conditions",
        set,
        "--out",
        out,
        "--backend",
        "wasm",
        "--batch-size",
        "16",
      ],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    });
    const { code, stdout, stderr } = await command.output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.match(text, /\| overlapping +\| no +\| \d+ \/ 40/);
    assert.match(
      text.trim().split("\n").at(-1)!,
      /^conditions=2 lowest_readable=reference accuracy=\d+\.\d\d$/,
    );
    const report = JSON.parse(await Deno.readTextFile(`${out}.json`));
    assert.ok((await Deno.readTextFile(`${out}.md`)).includes("| reference "));

    // Directly: the model's sums (predictBatch) and read-outs (explainBatch) on the same files.
    const { model } = await loadCheckpoint(SHIPPED);
    for (const entry of report.conditions) {
      const images = (await readNpy(join(set, entry.name, CONDITION_FILES.images)))
        .data as Uint8Array;
      const labels = (await readNpy(join(set, entry.name, CONDITION_FILES.labels))).data;
      const digits = (await readNpy(join(set, entry.name, CONDITION_FILES.digits))).data;
      const ink = (await readNpy(join(set, entry.name, CONDITION_FILES.ink))).data;
      const x = tf.tidy(() =>
        tf.tensor4d(Float32Array.from(images, (v) => v / 255), [40, H, W, 1])
      );
      const sums = await predictBatch(model, x, "classification");
      const explanations = await explainBatch(model, x);
      x.dispose();
      let right = 0;
      sums.forEach((s, i) => right += s === Number(labels[i]) ? 1 : 0);
      assert.deepEqual(entry.sums, { correct: right, total: 40 }, entry.name);
      assert.equal(entry.accuracy, (100 * right) / 40);
      const [lo, hi] = wilsonInterval({ correct: right, total: 40 });
      assert.deepEqual(entry.interval, [lo, hi]);
      // Per position: the k-th digit read against the k-th placed digit from the left.
      const positions = [0, 0, 0, 0];
      explanations.forEach((e, n) => {
        assert.equal(e.sum, sums[n]);
        const order = digitGeometry(ink as Uint8Array, n).order;
        order.forEach((k, position) => {
          if (e.digits[position]?.digit === Number(digits[n * 4 + k])) positions[position]++;
        });
      });
      assert.deepEqual(
        entry.readout.positions.map((t: { correct: number }) => t.correct),
        positions,
      );
    }
    // The same numbers through the library function, on the first 16 of each.
    const partial = await evaluateConditions(model, await readConditions(set), {
      task: "classification",
      batchSize: 16,
      limit: 16,
    });
    assert.deepEqual(partial.map((r) => r.sums.total), [16, 16]);
    model.dispose();
  });
});

Deno.test("readConditionsReport() reads the committed reports and names what is wrong", async () => {
  const measurements = new URL("../docs/measurements/", import.meta.url).pathname;
  const shipped = await readConditionsReport(join(measurements, "sumnet_conditions.json"));
  const robust = await readConditionsReport(join(measurements, "sumnet_robust_conditions.json"));
  // Both score the same 16 conditions, in the same order, on the same digits.
  assert.deepEqual(
    robust.conditions.map((c) => [c.name, c.fingerprint]),
    shipped.conditions.map((c) => [c.name, c.fingerprint]),
  );
  assert.equal(shipped.conditions.length, CONDITIONS.length);
  for (const c of shipped.conditions) {
    assert.equal(c.accuracy, (100 * c.sums.correct) / c.sums.total, c.name);
  }
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "report.json");
    await assert.rejects(readConditionsReport(path), /report\.json: no such file/);
    await Deno.writeTextFile(path, JSON.stringify({ model: "m", conditions: [] }));
    await assert.rejects(readConditionsReport(path), /report\.json: 'conditions' is \[\]/);
    const broken = { ...shipped, conditions: [{ ...shipped.conditions[0], sums: { correct: 3 } }] };
    await Deno.writeTextFile(path, JSON.stringify(broken));
    await assert.rejects(readConditionsReport(path), /report\.json: condition 0 is/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
