/**
 * lib/data/provenance.ts on a small generated folder: the course files' digits drawn again and
 * checked against the files' sums, a split's validation digits, and SumNet's stage 1 with them
 * kept out.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  COURSE_IMAGE_FILES,
  COURSE_LABEL_FILES,
  ensureDataset,
  loadMnist,
  MANIFEST_FILE,
} from "../lib/data/generate.ts";
import { courseDigitSources, validationDigits, withoutDigits } from "../lib/data/provenance.ts";
import { getLoaders } from "../lib/data/loader.ts";
import { encodeNpy, readNpy } from "../lib/io/npy.ts";
import { runExperiment, studyConfig } from "../lib/training/experiment.ts";

const PER_FILE = 100;

/** A folder of three 100-image course files (and a small test set). */
async function smallData(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_provenance_" });
  await ensureDataset(dir, { imagesPerFile: PER_FILE, testCount: 64, log: () => {} });
  return dir;
}

Deno.test("courseDigitSources() gives four MNIST digits per composite that add up to its file's sum", async () => {
  const dir = await smallData();
  try {
    const mnist = await loadMnist("train");
    const sources = await courseDigitSources(dir, mnist);
    assert.equal(sources.length, 3 * PER_FILE * 4);
    let n = 0;
    for (const file of COURSE_LABEL_FILES) {
      const sums = (await readNpy(join(dir, file))).data;
      for (let i = 0; i < PER_FILE; i++, n++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += mnist.labels[sources[n * 4 + k]];
        assert.equal(sum, Number(sums[i]), `${file} image ${i}`);
      }
    }
    // Each file draws a digit of a class once before reusing any: no repeats within a file.
    for (let f = 0; f < 3; f++) {
      const part = sources.subarray(f * PER_FILE * 4, (f + 1) * PER_FILE * 4);
      assert.equal(new Set(part).size, part.length);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validationDigits() holds the digits of the split's validation composites only", async () => {
  const dir = await smallData();
  try {
    const mnist = await loadMnist("train");
    const sources = await courseDigitSources(dir, mnist);
    const all = await validationDigits(dir, mnist, { trainFraction: 0 });
    assert.deepEqual([...all], [...new Set(sources)].sort((a, b) => a - b));
    // The digits of the composites the run's validation loader reads, each once.
    const val = await validationDigits(dir, mnist, { seed: 10 });
    const { val: loader } = await getLoaders(0.8, 60, { seed: 10, dataDir: dir, log: () => {} });
    assert.equal(loader.size, 60);
    const expected = new Set<number>();
    for (const image of loader.indices()) {
      for (let k = 0; k < 4; k++) expected.add(sources[image * 4 + k]);
    }
    assert.deepEqual([...val], [...expected].sort((a, b) => a - b));
    const other = await validationDigits(dir, mnist, { seed: 42 });
    assert.notDeepEqual([...other], [...val]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("courseDigitSources() rejects a folder without a manifest or with changed sums, naming the file", async () => {
  const dir = await smallData();
  try {
    const mnist = await loadMnist("train");
    const labels = join(dir, COURSE_LABEL_FILES[1]);
    const sums = (await readNpy(labels)).data as Uint8Array;
    sums[17] = (sums[17] + 1) % 37;
    await Deno.writeFile(labels, encodeNpy({ dtype: "uint8", shape: [PER_FILE], data: sums }));
    await assert.rejects(
      courseDigitSources(dir, mnist),
      new RegExp(
        `^Error: Cannot tell which digits make up ${join(dir, COURSE_IMAGE_FILES[1])}: ` +
          `lab1\\.npy gives sum \\d+ for image 17`,
      ),
    );
    await Deno.remove(join(dir, MANIFEST_FILE));
    await assert.rejects(validationDigits(dir, mnist), /no .*MANIFEST\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withoutDigits() drops exactly the given digits and keeps the rest in order", () => {
  const source = {
    images: Uint8Array.from({ length: 5 * 784 }, (_, i) => Math.floor(i / 784)),
    labels: Uint8Array.from([3, 1, 4, 1, 5]),
    count: 5,
    name: "five",
  };
  const rest = withoutDigits(source, [1, 3, 1]);
  assert.equal(rest.count, 3);
  assert.deepEqual([...rest.labels], [3, 4, 5]);
  assert.deepEqual([rest.images[0], rest.images[784], rest.images[2 * 784]], [0, 2, 4]);
  assert.equal(rest.name, "five without 2");
  assert.throws(() => withoutDigits(source, [5]), /index 5 is outside five \(5 digits\)/);
});

/** A one-epoch SumNet run on `dir` (seed 3, 64 images); its log lines and checkpoint metadata. */
async function sumnetRun(
  dir: string,
  prepareOptions: Record<string, unknown>,
): Promise<{ log: string; meta: Record<string, unknown> }> {
  const lines: string[] = [];
  const config = studyConfig("sumnet", {
    seed: 3,
    limit: 64,
    epochs: 1,
    batchSize: 32,
    dataDir: dir,
  });
  const checkpointDir = join(dir, "sumnet_3");
  const result = await runExperiment(config, {
    checkpointDir,
    progress: false,
    test: false,
    log: (line) => lines.push(line),
    prepareOptions: { epochs: 1, validationImages: 32, ...prepareOptions },
  });
  result.model.dispose();
  const meta = JSON.parse(await Deno.readTextFile(join(checkpointDir, "digitsum.json")));
  // The run's result (and so a sweep's run record) says the same as its checkpoint.
  assert.deepEqual(result.prepared, meta.prepared);
  await Deno.remove(checkpointDir, { recursive: true });
  return { log: lines.join("\n"), meta };
}

Deno.test({
  name: "pretrainSumNet() keeps the validation digits out of the strips by default, and says so",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await smallData();
    try {
      const { log, meta } = await sumnetRun(dir, {});
      assert.match(log, /leaves out the 240 MNIST digits of seed 3's validation composites/);
      assert.match(log, /strips of 59760 chosen MNIST training digits \(mnist-train without 240\)/);
      // The checkpoint records what stage 1 pasted, beside the options it was given.
      assert.deepEqual(meta.prepared, {
        stripDigits: "mnist-train without 240",
        stripDigitCount: 59760,
        heldOutValidationDigits: 240,
      });
      assert.deepEqual(meta.prepareOptions, { epochs: 1, validationImages: 32 });
      // Asked for explicitly, the same; turned off, every digit.
      const required = await sumnetRun(dir, { holdOutValidationDigits: true });
      assert.deepEqual(required.meta.prepared, meta.prepared);
      const kept = await sumnetRun(dir, { holdOutValidationDigits: false });
      assert.deepEqual(kept.meta.prepared, {
        stripDigits: "mnist-train",
        stripDigitCount: 60000,
        heldOutValidationDigits: 0,
      });
      assert.doesNotMatch(kept.log, /leaves out/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "pretrainSumNet() pastes every digit of a folder without a manifest, unless told to hold out",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await smallData();
    try {
      await Deno.remove(join(dir, MANIFEST_FILE));
      const { log, meta } = await sumnetRun(dir, {});
      assert.match(
        log,
        new RegExp(`pastes all MNIST training digits: ${join(dir, MANIFEST_FILE)} is missing`),
      );
      assert.equal((meta.prepared as Record<string, unknown>).heldOutValidationDigits, 0);
      assert.equal((meta.prepared as Record<string, unknown>).stripDigitCount, 60000);
      await assert.rejects(
        sumnetRun(dir, { holdOutValidationDigits: true }),
        new RegExp(`Cannot tell which digits make up .*: no ${join(dir, MANIFEST_FILE)}`),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "runExperiment() keeps the prepare stage's record across a stop and a resume from its state",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await smallData();
    try {
      const config = studyConfig("sumnet", {
        seed: 3,
        limit: 64,
        epochs: 2,
        batchSize: 32,
        dataDir: dir,
      });
      const stateDir = join(dir, "state");
      const checkpointDir = join(dir, "sumnet_3");
      const common = {
        checkpointDir,
        stateDir,
        progress: false,
        test: false,
        log: () => {},
        prepareOptions: { epochs: 1, validationImages: 32 },
      };
      let epochs = 0;
      await assert.rejects(
        runExperiment(config, {
          ...common,
          onEpochEnd: () => void epochs++,
          shouldStop: () => epochs >= 1,
        }),
        /stopped after epoch 1\/2/,
      );
      const saved = JSON.parse(await Deno.readTextFile(join(stateDir, "digitsum.json")));
      assert.equal(saved.prepared.heldOutValidationDigits, 240);
      // The second process skips stage 1 (the state has it) and still records what it pasted.
      const lines: string[] = [];
      const result = await runExperiment(config, { ...common, log: (line) => lines.push(line) });
      result.model.dispose();
      assert.match(lines.join("\n"), /Resuming SumNet/);
      assert.doesNotMatch(lines.join("\n"), /Stage 1/);
      const meta = JSON.parse(await Deno.readTextFile(join(checkpointDir, "digitsum.json")));
      assert.deepEqual(meta.prepared, saved.prepared);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
