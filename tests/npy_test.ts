import assert from "node:assert/strict";
import { join } from "node:path";
import {
  asFloat32,
  asInt32,
  elementCount,
  encodeNpy,
  encodeNpyHeader,
  type NdArray,
  openNpy,
  parseNpy,
  readNpy,
  writeNpy,
} from "../lib/io/npy.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

/** Path of a committed fixture file. */
function fixture(name: string): string {
  return new URL(name, FIXTURES).pathname;
}

/** Whether python3 with NumPy can be run on this machine. */
async function hasNumpy(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("python3", {
      args: ["-c", "import numpy"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}
const NUMPY_AVAILABLE = await hasNumpy();

/** Run `body` with a fresh temp directory that is removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_npy_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Hand-build an `.npy` file: magic, version, header length field, `header` (latin-1 or, for
 * version 3, UTF-8 encoded, used verbatim) and `data`.
 */
function buildNpy(
  header: string,
  data: Uint8Array,
  options: { major?: number; minor?: number; headerLength?: number } = {},
): Uint8Array {
  const major = options.major ?? 1;
  const headerBytes = major === 3
    ? new TextEncoder().encode(header)
    : Uint8Array.from(header, (c) => c.charCodeAt(0));
  const preamble = major === 1 ? 10 : 12;
  const out = new Uint8Array(preamble + headerBytes.length + data.length);
  out.set([0x93, ...new TextEncoder().encode("NUMPY"), major, options.minor ?? 0]);
  const view = new DataView(out.buffer);
  const length = options.headerLength ?? headerBytes.length;
  if (major === 1) view.setUint16(8, length, true);
  else view.setUint32(8, length, true);
  out.set(headerBytes, preamble);
  out.set(data, preamble + headerBytes.length);
  return out;
}

/** A valid header for a float32 array of shape `shape` (padded to 64 bytes for version 1). */
function f4Header(shape: string): string {
  const text = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  return text + " ".repeat(64 - ((10 + text.length + 1) % 64)) + "\n";
}

/** Bytes of a Float32Array. */
function f4Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

/** Write `bytes` as `<dir>/<name>`, then assert that readNpy rejects it mentioning `problem`. */
async function assertReadRejects(
  bytes: Uint8Array,
  problem: string | RegExp,
  fileName = "bad.npy",
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, fileName);
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => readNpy(path), (error: Error) => {
      const prefix = `Cannot read ${path}: `;
      assert.ok(error.message.startsWith(prefix), `no file name in: ${error.message}`);
      if (typeof problem === "string") {
        assert.ok(error.message.includes(problem), `"${problem}" not in: ${error.message}`);
      } else {
        assert.match(error.message, problem);
      }
      return true;
    });
  });
}

/** One array of every dtype, with awkward values. */
const SAMPLES: NdArray[] = [
  {
    dtype: "uint8",
    shape: [3, 40, 168],
    data: Uint8Array.from({ length: 3 * 40 * 168 }, (_, i) => (i * 31) % 256),
  },
  {
    dtype: "int64",
    shape: [6],
    data: BigInt64Array.from([0n, 36n, -1n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)]),
  },
  {
    dtype: "float32",
    shape: [2, 4],
    data: Float32Array.from([0.1, -0, NaN, Infinity, -Infinity, 1e-45, 3.4e38, -2.5]),
  },
  {
    dtype: "float64",
    shape: [2, 2, 1],
    data: Float64Array.from([Math.PI, -0, NaN, Number.MIN_VALUE]),
  },
  { dtype: "float64", shape: [], data: Float64Array.from([42.5]) },
  { dtype: "float32", shape: [0, 3], data: new Float32Array(0) },
  { dtype: "uint8", shape: [0], data: new Uint8Array(0) },
];

Deno.test("writeNpy() and readNpy() round-trip every dtype", async () => {
  await withTempDir(async (dir) => {
    for (const [i, sample] of SAMPLES.entries()) {
      const path = join(dir, `sample${i}.npy`);
      await writeNpy(path, sample);
      const back = await readNpy(path);
      assert.equal(back.dtype, sample.dtype);
      assert.deepEqual(back.shape, sample.shape);
      assert.equal(back.data.constructor, sample.data.constructor);
      // Compare raw bytes so NaN and -0 are checked exactly.
      const bytesOf = (a: NdArray) =>
        new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
      assert.deepEqual(bytesOf(back), bytesOf(sample));
    }
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.equal(names.filter((n) => n.endsWith(".tmp")).length, 0);
  });
});

Deno.test("encodeNpy() writes version 1.0 with data aligned to 64 bytes and a '\\n' header end", () => {
  for (const sample of SAMPLES) {
    const bytes = encodeNpy(sample);
    assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 78, 85, 77, 80, 89, 1, 0]);
    const headerLength = bytes[8] | (bytes[9] << 8);
    const dataOffset = 10 + headerLength;
    assert.equal(dataOffset % 64, 0);
    assert.equal(bytes[dataOffset - 1], 0x0a);
    assert.equal(bytes.length, dataOffset + sample.data.byteLength);
  }
});

Deno.test("encodeNpy() matches NumPy's bytes exactly", async () => {
  for (
    const name of [
      "numpy_u1_2x3x4.npy",
      "numpy_i8_labels.npy",
      "numpy_f4_2x3.npy",
      "numpy_f8_scalar.npy",
      "numpy_f8_empty.npy",
    ]
  ) {
    const original = await Deno.readFile(fixture(name));
    assert.deepEqual(encodeNpy(parseNpy(original, name)), original, name);
  }
  const v2 = await Deno.readFile(fixture("numpy_f4_v2.npy"));
  assert.deepEqual(encodeNpy(parseNpy(v2, "v2"), { version: 2 }), v2);
  const v3 = await Deno.readFile(fixture("numpy_f4_v3.npy"));
  assert.deepEqual(encodeNpy(parseNpy(v3, "v3"), { version: 3 }), v3);
});

Deno.test("parseNpy() reads files NumPy wrote, value for value", async () => {
  const u1 = await readNpy(fixture("numpy_u1_2x3x4.npy"));
  assert.equal(u1.dtype, "uint8");
  assert.deepEqual(u1.shape, [2, 3, 4]);
  assert.deepEqual([...u1.data], Array.from({ length: 24 }, (_, i) => (i * 10) % 256));

  const i8 = await readNpy(fixture("numpy_i8_labels.npy"));
  assert.equal(i8.dtype, "int64");
  assert.deepEqual(i8.shape, [5]);
  assert.deepEqual([...i8.data], [0n, 36n, -1n, 2n ** 40n, -(2n ** 62n)]);

  const f4 = await readNpy(fixture("numpy_f4_2x3.npy"));
  assert.equal(f4.dtype, "float32");
  assert.deepEqual(f4.shape, [2, 3]);
  assert.deepEqual(f4.data, Float32Array.from([0.1, -0, 1e-45, Infinity, -Infinity, 3.5]));
  assert.ok(Object.is(f4.data[1], -0));

  const scalar = await readNpy(fixture("numpy_f8_scalar.npy"));
  assert.equal(scalar.dtype, "float64");
  assert.deepEqual(scalar.shape, []);
  assert.deepEqual([...scalar.data], [Math.PI]);

  const empty = await readNpy(fixture("numpy_f8_empty.npy"));
  assert.deepEqual(empty.shape, [0, 3]);
  assert.equal(empty.data.length, 0);

  for (const name of ["numpy_f4_v2.npy", "numpy_f4_v3.npy"]) {
    const array = await readNpy(fixture(name));
    assert.equal(array.dtype, "float32");
    assert.deepEqual(array.shape, [3]);
    assert.deepEqual([...array.data], [1, 2.5, -3]);
  }
});

Deno.test("parseNpy() reads hand-built version 2.0 and 3.0 files", () => {
  const data = f4Bytes([1, 2, 3, 4]);
  const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n";
  for (const major of [2, 3]) {
    const array = parseNpy(buildNpy(header, data, { major }), `v${major}.npy`);
    assert.equal(array.dtype, "float32");
    assert.deepEqual(array.shape, [2, 2]);
    assert.deepEqual([...array.data], [1, 2, 3, 4]);
  }
});

Deno.test("parseNpy() reads old-style headers (Python 2 longs, double quotes, any key order)", () => {
  const header = '{"shape": (2L, 1L), "fortran_order": False, "descr": "<u1"}    \n';
  const array = parseNpy(buildNpy(header, new Uint8Array([7, 9])), "old.npy");
  assert.equal(array.dtype, "uint8");
  assert.deepEqual(array.shape, [2, 1]);
  assert.deepEqual([...array.data], [7, 9]);
});

Deno.test("parseNpy() accepts Fortran order when it does not change the layout", () => {
  const header = "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 1), }\n";
  const array = parseNpy(buildNpy(header, new Uint8Array(new Float64Array([1, 2, 3]).buffer)), "f");
  assert.deepEqual(array.shape, [3, 1]);
  assert.deepEqual([...array.data], [1, 2, 3]);
});

Deno.test("parseNpy() copies unaligned data and views aligned data", () => {
  const file = encodeNpy({ dtype: "float32", shape: [3], data: Float32Array.from([1, 2, 3]) });
  const aligned = parseNpy(file, "aligned.npy");
  assert.equal(aligned.data.buffer, file.buffer);

  const shifted = new Uint8Array(file.length + 1);
  shifted.set(file, 1);
  const unaligned = parseNpy(shifted.subarray(1), "unaligned.npy");
  assert.notEqual(unaligned.data.buffer, shifted.buffer);
  assert.deepEqual([...unaligned.data], [1, 2, 3]);

  const i8 = encodeNpy({ dtype: "int64", shape: [2], data: BigInt64Array.from([5n, -6n]) });
  const shifted8 = new Uint8Array(i8.length + 4);
  shifted8.set(i8, 4);
  assert.deepEqual([...parseNpy(shifted8.subarray(4), "i8.npy").data], [5n, -6n]);
});

Deno.test("encodeNpy() switches to version 2.0 when the header exceeds 65535 bytes", () => {
  const shape = new Array(25_000).fill(1);
  const bytes = encodeNpy({ dtype: "float64", shape, data: Float64Array.from([2.5]) });
  assert.equal(bytes[6], 2);
  const headerLength = new DataView(bytes.buffer).getUint32(8, true);
  assert.ok(headerLength > 65_535);
  assert.equal((12 + headerLength) % 64, 0);
  const back = parseNpy(bytes, "big_header.npy");
  assert.deepEqual(back.shape, shape);
  assert.deepEqual([...back.data], [2.5]);
  assert.throws(
    () => encodeNpy({ dtype: "float64", shape, data: Float64Array.from([2.5]) }, { version: 1 }),
    /Cannot encode NPY: header of \d+ bytes does not fit NPY version 1\.0/,
  );
});

Deno.test("parseNpy() rejects an empty file", async () => {
  await assertReadRejects(new Uint8Array(0), "empty file");
});

Deno.test("parseNpy() rejects bad magic", async () => {
  await assertReadRejects(new TextEncoder().encode("PK\x03\x04 not numpy"), "bad magic");
  // The MNIST IDX header is a typical wrong file.
  await assertReadRejects(new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 5, 7]), "bad magic");
});

Deno.test("parseNpy() rejects an unsupported format version", async () => {
  const header = f4Header("(1,)");
  await assertReadRejects(
    buildNpy(header, f4Bytes([1]), { major: 4 }),
    "unsupported NPY format version 4.0",
  );
  await assertReadRejects(
    buildNpy(header, f4Bytes([1]), { minor: 1 }),
    "unsupported NPY format version 1.1",
  );
});

Deno.test("parseNpy() rejects a truncated header", async () => {
  const file = encodeNpy({ dtype: "float32", shape: [2], data: Float32Array.from([1, 2]) });
  await assertReadRejects(file.subarray(0, 4), "truncated header"); // inside the magic
  await assertReadRejects(file.subarray(0, 9), "truncated header"); // inside the length field
  await assertReadRejects(file.subarray(0, 40), "truncated header: header needs 128 bytes");
  await assertReadRejects(
    buildNpy("{'descr': '<f4'", new Uint8Array(0), { major: 2, headerLength: 1000 }),
    "truncated header: header needs 1012 bytes, file has only 27",
  );
});

Deno.test("parseNpy() rejects truncated data, giving expected and actual sizes", async () => {
  const file = encodeNpy({ dtype: "float64", shape: [10, 2], data: new Float64Array(20) });
  await assertReadRejects(
    file.subarray(0, file.length - 3),
    "size mismatch: shape (10, 2) of '<f8' needs 160 data bytes, got 157 (truncated data)",
  );
});

Deno.test("parseNpy() rejects extra data after the array", async () => {
  const file = encodeNpy({ dtype: "uint8", shape: [4], data: new Uint8Array(4) });
  const longer = new Uint8Array(file.length + 2);
  longer.set(file);
  await assertReadRejects(
    longer,
    "size mismatch: shape (4,) of '|u1' needs 4 data bytes, got 6 (extra data after the array)",
  );
});

Deno.test("parseNpy() rejects unsupported dtypes, showing them", async () => {
  await assertReadRejects(
    await Deno.readFile(fixture("numpy_be_f8.npy")),
    "unsupported dtype '>f8'",
    "data0.npy",
  );
  await assertReadRejects(
    await Deno.readFile(fixture("numpy_bool.npy")),
    "unsupported dtype '|b1'",
  );
  const structured = "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1,), }\n";
  await assertReadRejects(
    buildNpy(structured, f4Bytes([1])),
    "unsupported dtype [('x', '<f4')]",
  );
});

Deno.test("parseNpy() rejects Fortran-order arrays", async () => {
  await assertReadRejects(
    await Deno.readFile(fixture("numpy_fortran_f4.npy")),
    "Fortran-order arrays are not supported (shape (2, 3))",
  );
});

Deno.test("parseNpy() rejects a bad header dict", async () => {
  const data = f4Bytes([1, 2]);
  const cases: [string, string][] = [
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ", "unparseable header dict"],
    ["{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", "unparseable header dict"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "unparseable header dict"],
    ["{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "unparseable header dict"],
    ["{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", "unexpected name 'false'"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}", "unparseable header dict"],
    ["__import__('os').system('true')", "unparseable header dict"],
    ["['descr', '<f4']", "header is not a dict"],
    ["{'descr': '<f4', 'shape': (2,)}", "header is missing key 'fortran_order'"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", "unexpected key 'x'"],
    ["{'descr': '<f4', 'descr': '<f4', 'fortran_order': False}", "header repeats key 'descr'"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': 2}", "shape must be a tuple"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "shape must be a tuple"],
    ["{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "non-negative integers"],
    ["{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "fortran_order must be True or False"],
    ["", "unexpected end of header"],
  ];
  for (const [header, problem] of cases) {
    await assertReadRejects(buildNpy(header + "\n", data), problem);
  }
});

Deno.test("parseNpy() rejects a version 3.0 header that is not UTF-8", async () => {
  const file = buildNpy(f4Header("(1,)"), f4Bytes([1]), { major: 3 });
  file[14] = 0xff; // inside "{'descr'"
  await assertReadRejects(file, "header is not valid UTF-8");
});

Deno.test("readNpy() rejects a missing file, naming it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "nope.npy");
    await assert.rejects(() => readNpy(path), (error: Error) => {
      assert.ok(error.message.startsWith(`Cannot read ${path}: `), error.message);
      return true;
    });
  });
});

Deno.test("encodeNpy() and writeNpy() reject inconsistent arrays", async () => {
  assert.throws(
    () => encodeNpy({ dtype: "float32", shape: [2, 3], data: new Float32Array(5) }),
    /Cannot encode NPY: data has 5 elements but shape \(2, 3\) needs 6/,
  );
  assert.throws(
    () => encodeNpy({ dtype: "float32", shape: [2], data: new Float64Array(2) }),
    /Cannot encode NPY: dtype 'float32' needs a Float32Array, got Float64Array/,
  );
  assert.throws(
    () => encodeNpy({ dtype: "uint8", shape: [1.5], data: new Uint8Array(1) }),
    /Cannot encode NPY: invalid shape/,
  );
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.npy");
    await assert.rejects(
      () => writeNpy(path, { dtype: "int64", shape: [3], data: new BigInt64Array(2) }),
      (error: Error) => error.message.startsWith(`Cannot write ${path}: data has 2 elements`),
    );
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
  });
});

Deno.test("elementCount() multiplies dimensions", () => {
  assert.equal(elementCount([]), 1);
  assert.equal(elementCount([10_000, 40, 168]), 67_200_000);
  assert.equal(elementCount([3, 0, 5]), 0);
  assert.throws(() => elementCount([-1]), /invalid shape/);
});

Deno.test("asFloat32() converts every dtype", () => {
  const expected = Float32Array.from([0, 7, 36]);
  const arrays: NdArray[] = [
    { dtype: "uint8", shape: [3], data: Uint8Array.from([0, 7, 36]) },
    { dtype: "int64", shape: [3], data: BigInt64Array.from([0n, 7n, 36n]) },
    { dtype: "float64", shape: [3], data: Float64Array.from([0, 7, 36]) },
  ];
  for (const array of arrays) assert.deepEqual(asFloat32(array), expected);
  const f4: NdArray = { dtype: "float32", shape: [3], data: expected };
  assert.equal(asFloat32(f4), expected);
});

Deno.test("asInt32() converts integer labels and rejects non-integers", () => {
  const expected = Int32Array.from([0, 7, 36]);
  const arrays: NdArray[] = [
    { dtype: "uint8", shape: [3], data: Uint8Array.from([0, 7, 36]) },
    { dtype: "int64", shape: [3], data: BigInt64Array.from([0n, 7n, 36n]) },
    { dtype: "float32", shape: [3], data: Float32Array.from([0, 7, 36]) },
    { dtype: "float64", shape: [3], data: Float64Array.from([0, 7, 36]) },
  ];
  for (const array of arrays) assert.deepEqual(asInt32(array, "labels.npy"), expected);
  assert.throws(
    () => asInt32({ dtype: "float64", shape: [2], data: Float64Array.from([1, 2.5]) }, "y.npy"),
    /Cannot read y\.npy: element 1 is 2\.5, not an int32 integer/,
  );
  assert.throws(
    () => asInt32({ dtype: "int64", shape: [1], data: BigInt64Array.from([2n ** 40n]) }, "y.npy"),
    /Cannot read y\.npy: element 0 is 1099511627776/,
  );
});

Deno.test({
  name: "writeNpy() files load in NumPy and NumPy files load here (live python3)",
  ignore: !NUMPY_AVAILABLE,
  fn: async () => {
    await withTempDir(async (dir) => {
      for (const [i, sample] of SAMPLES.entries()) await writeNpy(join(dir, `s${i}.npy`), sample);
      const script = `
import sys, numpy as np
d = sys.argv[1]
for i in range(${SAMPLES.length}):
    a = np.load(f"{d}/s{i}.npy")
    print(a.dtype.str, a.shape, a.tobytes().hex())
rng = np.random.default_rng(0)
np.save(f"{d}/py_u1.npy", rng.integers(0, 256, size=(5, 40, 168), dtype=np.uint8))
np.save(f"{d}/py_f4.npy", rng.standard_normal((7, 3)).astype("<f4"))
print(np.load(f"{d}/py_u1.npy").tobytes().hex())
print(np.load(f"{d}/py_f4.npy").tobytes().hex())
`;
      const result = await new Deno.Command("python3", { args: ["-c", script, dir] }).output();
      assert.ok(result.success, new TextDecoder().decode(result.stderr));
      const lines = new TextDecoder().decode(result.stdout).trim().split("\n");
      const hex = (a: NdArray) =>
        Array.from(
          new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength),
          (b) => b.toString(16).padStart(2, "0"),
        ).join("");
      const descr = { uint8: "|u1", int64: "<i8", float32: "<f4", float64: "<f8" };
      for (const [i, sample] of SAMPLES.entries()) {
        const shape = sample.shape.length === 1
          ? `(${sample.shape[0]},)`
          : `(${sample.shape.join(", ")})`;
        assert.equal(lines[i], `${descr[sample.dtype]} ${shape} ${hex(sample)}`);
      }
      const u1 = await readNpy(join(dir, "py_u1.npy"));
      assert.deepEqual(u1.shape, [5, 40, 168]);
      assert.equal(hex(u1), lines[SAMPLES.length]);
      const f4 = await readNpy(join(dir, "py_f4.npy"));
      assert.deepEqual(f4.shape, [7, 3]);
      assert.equal(hex(f4), lines[SAMPLES.length + 1]);
      // Re-encoding gives NumPy's bytes exactly.
      assert.deepEqual(encodeNpy(f4), await Deno.readFile(join(dir, "py_f4.npy")));
    });
  },
});

/** An `.npy` file (version 1) with this header dict text and data bytes. */
function npyWithHeader(header: string, data = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(header + "\n");
  const out = new Uint8Array(10 + text.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, text.length, true);
  out.set(text, 10);
  out.set(data, 10 + text.length);
  return out;
}

Deno.test("parseNpy() refuses deeply nested headers and dtype names of Object's prototype (fuzz finds)", () => {
  // Before: a RangeError (stack overflow) and 'needs NaN data bytes'.
  const deep = npyWithHeader(
    `{'descr': '<f4', 'fortran_order': False, 'shape': ${"(".repeat(5000)}${")".repeat(5000)}}`,
  );
  assert.throws(
    () => parseNpy(deep, "deep.npy"),
    /^Error: Cannot read deep\.npy: unparseable header dict \(nested deeper than 32 levels/,
  );
  for (const descr of ["toString", "constructor", "__proto__"]) {
    const file = npyWithHeader(
      `{'descr': '${descr}', 'fortran_order': False, 'shape': (2,)}`,
      new Uint8Array(8),
    );
    assert.throws(
      () => parseNpy(file, "odd.npy"),
      new RegExp(`Cannot read odd\\.npy: unsupported dtype '${descr}'`),
    );
  }
});

Deno.test("openNpy() reads rows on demand and checks the header against the file size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = Float32Array.from({ length: 12 }, (_, i) => i / 2);
    const path = join(dir, "rows.npy");
    await writeNpy(path, { dtype: "float32", shape: [4, 3], data });
    const file = await openNpy(path);
    assert.deepEqual([file.rows, file.rowElements, file.dtype], [4, 3, "float32"]);
    assert.deepEqual(file.readRows(1, 2), data.subarray(3, 9));
    assert.throws(() => file.readRows(3, 2), RangeError);
    file.close();
    // The header of a streamed write equals encodeNpy's.
    const whole = encodeNpy({ dtype: "float32", shape: [4, 3], data });
    assert.deepEqual(encodeNpyHeader("float32", [4, 3]), whole.subarray(0, whole.length - 48));
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 1));
    await assert.rejects(
      openNpy(path),
      /Cannot read .*rows\.npy: size mismatch: .*needs 48 data bytes, got 47/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
