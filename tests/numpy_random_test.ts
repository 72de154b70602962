import assert from "node:assert/strict";
import { legacyPermutation, MT19937 } from "../lib/data/numpy_random.ts";

/** Test vectors from ORIGINAL_STUDY.md: NumPy's legacy shuffle of arange(30000). */
const STUDY_VECTORS = [
  {
    seed: 0,
    starts: [8225, 10794, 9163, 26591, 6631, 14161, 252, 2566, 3478, 2917, 12775, 29010],
    ends: [9845, 10799, 2732],
    sum24000: 359_863_573,
  },
  {
    seed: 10,
    starts: [20412, 1296, 3906, 20454, 5200, 13595, 23974, 6980, 2613, 23871, 21575, 8543],
    ends: [29199, 7293, 17673],
    sum24000: 359_679_210,
  },
  {
    seed: 42,
    starts: [2308, 22404, 23397, 25058, 2664, 8511, 5148, 7790, 11311, 19043, 10784, 22246],
    ends: [860, 15795, 23654],
    sum24000: 358_314_714,
  },
];

function sumOf(values: Int32Array): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

Deno.test("legacyPermutation() matches NumPy for n=10, seed=42", () => {
  assert.deepEqual(Array.from(legacyPermutation(10, 42)), [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]);
});

for (const v of STUDY_VECTORS) {
  Deno.test(`legacyPermutation() matches the study's split for n=30000, seed=${v.seed}`, () => {
    const perm = legacyPermutation(30000, v.seed);
    assert.equal(perm.length, 30000);
    assert.deepEqual(Array.from(perm.subarray(0, 12)), v.starts);
    assert.deepEqual(Array.from(perm.subarray(30000 - 3)), v.ends);
    assert.equal(sumOf(perm.subarray(0, 24000)), v.sum24000);
    // A permutation: every index exactly once.
    const seen = new Uint8Array(30000);
    for (const i of perm) seen[i]++;
    assert.ok(seen.every((c) => c === 1));
  });
}

Deno.test("MT19937 integer seeding reproduces NumPy's raw 32-bit outputs", () => {
  const mt = new MT19937(42);
  assert.deepEqual([mt.nextUint32(), mt.nextUint32(), mt.nextUint32()], [
    1608637542,
    3421126067,
    4083286876,
  ]);
  // The 1000th output crosses a state regeneration.
  const mt0 = new MT19937(0);
  let last = 0;
  for (let i = 0; i < 1000; i++) last = mt0.nextUint32();
  assert.equal(last, 3043451800);
});

Deno.test("MT19937 seedByArray() matches np.random.seed([1, 2, 3])", () => {
  const mt = new MT19937();
  mt.seedByArray([1, 2, 3]);
  const out = [mt.nextUint32(), mt.nextUint32(), mt.nextUint32(), mt.nextUint32()];
  assert.deepEqual(out, [2619334238, 1552691353, 3808334787, 2540200029]);
});

Deno.test("MT19937 nextDouble() matches np.random.random_sample()", () => {
  const mt = new MT19937(0);
  assert.equal(mt.nextDouble(), 0.5488135039273248);
  assert.equal(mt.nextDouble(), 0.7151893663724195);
});

Deno.test("legacyPermutation() matches other fixed NumPy vectors", () => {
  assert.deepEqual(Array.from(legacyPermutation(7, 0)), [6, 2, 1, 3, 0, 5, 4]);
  const p = legacyPermutation(1000, 123);
  assert.deepEqual(Array.from(p.subarray(0, 8)), [131, 203, 50, 585, 138, 632, 328, 461]);
  assert.deepEqual(Array.from(p.subarray(997)), [382, 365, 510]);
  assert.equal(sumOf(p.subarray(0, 800)), 403776);
  const big = legacyPermutation(100000, 4294967295);
  assert.deepEqual(Array.from(big.subarray(0, 4)), [85117, 19600, 4648, 56853]);
});

Deno.test("legacyPermutation() handles n=0 and n=1", () => {
  assert.equal(legacyPermutation(0, 1).length, 0);
  assert.deepEqual(Array.from(legacyPermutation(1, 1)), [0]);
});

Deno.test("MT19937 rejects seeds NumPy rejects", () => {
  assert.throws(() => new MT19937(-1), /seed must be an integer in 0\.\.4294967295, got -1/);
  assert.throws(() => new MT19937(2 ** 32), /got 4294967296/);
  assert.throws(() => new MT19937(1.5), /got 1.5/);
  assert.throws(() => legacyPermutation(-3, 0), /n must be a non-negative integer, got -3/);
});

Deno.test("MT19937 randomInterval() stays within 0..max", () => {
  const mt = new MT19937(7);
  for (const max of [0, 1, 2, 5, 255, 256, 1000, 0xffffffff]) {
    for (let i = 0; i < 200; i++) {
      const v = mt.randomInterval(max);
      assert.ok(Number.isInteger(v) && v >= 0 && v <= max, `${v} not in 0..${max}`);
    }
  }
});

/** Whether python3 with numpy can run here; the cross-check below runs only then. */
function numpyAvailable(): boolean {
  try {
    const r = new Deno.Command("python3", {
      args: ["-c", "import numpy"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return r.success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "legacyPermutation() agrees with live NumPy on random (n, seed) pairs",
  ignore: !numpyAvailable(),
  fn() {
    const pairs = [[2, 3], [17, 99], [5000, 2024], [65537, 123456789]];
    const script = [
      "import sys, json, numpy as np",
      "out = []",
      "for n, s in json.loads(sys.argv[1]):",
      "    np.random.seed(s); a = np.arange(n); np.random.shuffle(a); out.append(a.tolist())",
      "print(json.dumps(out))",
    ].join("\n");
    const r = new Deno.Command("python3", { args: ["-c", script, JSON.stringify(pairs)] })
      .outputSync();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    const expected: number[][] = JSON.parse(new TextDecoder().decode(r.stdout));
    pairs.forEach(([n, s], k) => {
      assert.deepEqual(Array.from(legacyPermutation(n, s)), expected[k], `n=${n} seed=${s}`);
    });
  },
});
