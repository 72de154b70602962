import assert from "node:assert/strict";
import { join } from "node:path";
import {
  encodeSafetensors,
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
} from "../lib/io/safetensors.ts";

/** A hand-built file: header JSON (unpadded) followed by `data`. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(
    typeof header === "string" ? header : JSON.stringify(header),
  );
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

Deno.test("parseSafetensors() reads a hand-built F32 file and ignores __metadata__", () => {
  const bytes = rawFile(
    {
      __metadata__: { format: "pt" },
      b: { dtype: "F32", shape: [2], data_offsets: [24, 32] },
      a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
    },
    f32Bytes([1, 2, 3, 4, 5, 6, -7.5, 8.25]),
  );
  const tensors = parseSafetensors(bytes, "hand.safetensors");
  assert.deepEqual([...tensors.keys()], ["b", "a"]);
  assert.deepEqual(tensors.get("a")!.shape, [2, 3]);
  assert.deepEqual([...tensors.get("a")!.data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...tensors.get("b")!.data], [-7.5, 8.25]);
  assert.equal(tensors.get("b")!.dtype, "F32");
});

Deno.test("parseSafetensors() decodes F16 and BF16 bit patterns", () => {
  // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001, inf 0x7c00.
  // BF16: 1.0 = 0x3f80, -0.5 = 0xbf00, 3.140625 = 0x4049.
  const data = new Uint8Array(16);
  const view = new DataView(data.buffer);
  [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00].forEach((v, i) => view.setUint16(i * 2, v, true));
  [0x3f80, 0xbf00, 0x4049].forEach((v, i) => view.setUint16(10 + i * 2, v, true));
  const tensors = parseSafetensors(
    rawFile({
      h: { dtype: "F16", shape: [5], data_offsets: [0, 10] },
      b: { dtype: "BF16", shape: [3], data_offsets: [10, 16] },
    }, data),
    "half.safetensors",
  );
  assert.deepEqual([...tensors.get("h")!.data], [1, -2, 65504, 2 ** -24, Infinity]);
  assert.deepEqual([...tensors.get("b")!.data], [1, -0.5, 3.140625]);
});

Deno.test("encodeSafetensors() round-trips F32 exactly and F16/BF16 to nearest", () => {
  const values = new Float32Array([0, 1, -1.5, 0.1, 1e-3, 123.456, -65504, 3e-6]);
  const bytes = encodeSafetensors({
    a: { dtype: "F32", shape: [2, 4], data: values },
    h: { dtype: "F16", shape: [8], data: values },
    b: { dtype: "BF16", shape: [4, 2], data: values },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
    empty: { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
  }, { note: "test" });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLength % 8, 0);
  const tensors = parseSafetensors(bytes, "roundtrip.safetensors");
  assert.deepEqual(tensors.get("a")!.data, values);
  assert.deepEqual(tensors.get("b")!.shape, [4, 2]);
  assert.deepEqual([...tensors.get("scalar")!.data], [42]);
  assert.equal(tensors.get("empty")!.data.length, 0);
  const half = tensors.get("h")!.data;
  const bf = tensors.get("b")!.data;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // F16 has 11 significant bits (relative error <= 2^-11), BF16 has 8 (<= 2^-8); 3e-6 is an
    // F16 subnormal (absolute error <= 2^-25).
    assert.ok(Math.abs(half[i] - v) <= Math.max(Math.abs(v) * 2 ** -11, 2 ** -25), `F16 ${v}`);
    assert.ok(Math.abs(bf[i] - v) <= Math.abs(v) * 2 ** -8, `BF16 ${v}`);
  }
  assert.equal(half[3], 0.0999755859375); // 0.1 -> nearest half 0x2e66
  assert.equal(bf[3], 0.10009765625); // 0.1 -> nearest bfloat16 0x3dcd
});

Deno.test("encodeSafetensors() rejects data that does not match its shape", () => {
  assert.throws(
    () => encodeSafetensors({ x: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }),
    /Cannot encode tensor 'x': shape \[2, 2\] needs 4 values, got 3/,
  );
});

Deno.test("parseSafetensors() rejects a file shorter than the length prefix", () => {
  assert.throws(
    () => parseSafetensors(new Uint8Array(5), "short.safetensors"),
    /Cannot read short.safetensors: file too short \(5 bytes/,
  );
});

Deno.test("parseSafetensors() rejects a header length beyond the file", () => {
  const bytes = rawFile({});
  new DataView(bytes.buffer).setBigUint64(0, 1000n, true);
  assert.throws(
    () => parseSafetensors(bytes, "long.safetensors"),
    /Cannot read long.safetensors: header length 1000 goes beyond the end of the file/,
  );
});

Deno.test("parseSafetensors() rejects a header that is not JSON", () => {
  assert.throws(
    () => parseSafetensors(rawFile('{"a": {'), "bad.safetensors"),
    /Cannot read bad.safetensors: header is not valid JSON/,
  );
  assert.throws(
    () => parseSafetensors(rawFile("[1, 2]"), "array.safetensors"),
    /Cannot read array.safetensors: header is not a JSON object/,
  );
});

Deno.test("parseSafetensors() rejects offsets out of range", () => {
  const bytes = rawFile({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32Bytes([1]));
  assert.throws(
    () => parseSafetensors(bytes, "range.safetensors"),
    /Cannot read range.safetensors: tensor 'a': data_offsets \[0, 16\] out of range \(data section is 4 bytes\)/,
  );
  const reversed = rawFile(
    { a: { dtype: "F32", shape: [0], data_offsets: [4, 0] } },
    f32Bytes([1]),
  );
  assert.throws(() => parseSafetensors(reversed, "rev.safetensors"), /out of range/);
});

Deno.test("parseSafetensors() rejects offsets that do not match shape x dtype", () => {
  const bytes = rawFile(
    { a: { dtype: "F16", shape: [3], data_offsets: [0, 8] } },
    f32Bytes([1, 2]),
  );
  assert.throws(
    () => parseSafetensors(bytes, "size.safetensors"),
    /tensor 'a': data_offsets \[0, 8\] hold 8 bytes but shape \[3\] x F16 needs 6/,
  );
});

Deno.test("parseSafetensors() rejects overlapping tensors", () => {
  const bytes = rawFile({
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  }, f32Bytes([1, 2, 3]));
  assert.throws(
    () => parseSafetensors(bytes, "overlap.safetensors"),
    /Cannot read overlap.safetensors: tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/,
  );
});

Deno.test("parseSafetensors() rejects unsupported and malformed entries", () => {
  const i64 = rawFile({ a: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, f32Bytes([0, 0]));
  assert.throws(
    () => parseSafetensors(i64, "int.safetensors"),
    /Cannot read int.safetensors: tensor 'a' has unsupported dtype 'I64' \(supported: F32, F16, BF16\)/,
  );
  const weird = rawFile(
    { a: { dtype: "Q4", shape: [1], data_offsets: [0, 1] } },
    new Uint8Array(1),
  );
  assert.throws(() => parseSafetensors(weird, "q.safetensors"), /unknown dtype 'Q4'/);
  const shape = rawFile({ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, f32Bytes([0]));
  assert.throws(() => parseSafetensors(shape, "s.safetensors"), /tensor 'a' has an invalid shape/);
  const offsets = rawFile({ a: { dtype: "F32", shape: [1], data_offsets: [0] } }, f32Bytes([0]));
  assert.throws(() => parseSafetensors(offsets, "o.safetensors"), /invalid data_offsets \[0\]/);
  const entry = rawFile({ a: 3 });
  assert.throws(() => parseSafetensors(entry, "e.safetensors"), /tensor 'a' has no dtype/);
});

Deno.test("readSafetensors() reads a written file, whole or filtered", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "w.safetensors");
    await writeSafetensors(path, {
      "features.0.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      "classifier.0.weight": { dtype: "BF16", shape: [3], data: new Float32Array([1, 2, 3]) },
    });
    const all = await readSafetensors(path);
    assert.deepEqual([...all.keys()], ["features.0.weight", "classifier.0.weight"]);
    const some = await readSafetensors(path, { include: (name) => name.startsWith("features.") });
    assert.deepEqual([...some.keys()], ["features.0.weight"]);
    assert.deepEqual([...some.get("features.0.weight")!.data], [1, 2, 3, 4]);
    const leftovers = [...Deno.readDirSync(dir)].map((entry) => entry.name);
    assert.deepEqual(leftovers, ["w.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensors() names the file when it is missing or truncated", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = join(dir, "none.safetensors");
    await assert.rejects(
      readSafetensors(missing),
      new RegExp(`Cannot read ${missing}: file not found`),
    );
    const path = join(dir, "cut.safetensors");
    const bytes = encodeSafetensors({ a: { dtype: "F32", shape: [8], data: new Float32Array(8) } });
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 4));
    await assert.rejects(
      readSafetensors(path),
      /Cannot read .*cut.safetensors: tensor 'a'.*out of range/,
    );
    await assert.rejects(
      readSafetensors(path, { include: () => true }),
      /Cannot read .*cut.safetensors: tensor 'a'.*out of range/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseSafetensors() names missing fields and Object-prototype dtypes plainly (fuzz finds)", () => {
  // Before: "invalid data_offsets undefined" and "x constructor needs NaN".
  assert.throws(
    () =>
      parseSafetensors(
        rawFile({ a: { dtype: "F32", shape: [1] } }, new Uint8Array(4)),
        "m.safetensors",
      ),
    /Cannot read m\.safetensors: tensor 'a' has invalid data_offsets \(missing\)/,
  );
  for (const dtype of ["constructor", "toString", "__proto__"]) {
    assert.throws(
      () =>
        parseSafetensors(
          rawFile({ a: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
          "d.safetensors",
        ),
      new RegExp(`tensor 'a' has unknown dtype '${dtype}' \\(supported: F32, F16, BF16\\)`),
    );
  }
});
