import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ensureDir,
  exists,
  writeFileAtomic,
  writeJsonAtomic,
  writeTextAtomic,
} from "../lib/io/fsutil.ts";

/** Run `body` with a fresh temp directory that is removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_fsutil_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Names of the entries in `dir`, sorted. */
async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("writeFileAtomic() writes the bytes and leaves no temp file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "out.bin");
    const data = new Uint8Array(100_000).map((_, i) => (i * 7) % 256);
    await writeFileAtomic(path, data);
    assert.deepEqual(await Deno.readFile(path), data);
    assert.deepEqual(await listDir(dir), ["out.bin"]);
  });
});

Deno.test("writeFileAtomic() replaces an existing file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "out.bin");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3, 4, 5]));
    await writeFileAtomic(path, new Uint8Array([9]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([9]));
    assert.deepEqual(await listDir(dir), ["out.bin"]);
  });
});

Deno.test("writeFileAtomic() writes an empty file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "empty.bin");
    await writeFileAtomic(path, new Uint8Array(0));
    assert.equal((await Deno.stat(path)).size, 0);
  });
});

Deno.test("writeFileAtomic() rejects a missing directory, naming the path", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "missing", "out.bin");
    await assert.rejects(
      () => writeFileAtomic(path, new Uint8Array([1])),
      (error: Error) => error.message.startsWith(`Cannot write ${path}:`),
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("writeFileAtomic() removes the temp file when the rename fails", async () => {
  await withTempDir(async (dir) => {
    // A non-empty directory at the target path makes the rename fail after the write.
    const path = join(dir, "target");
    await Deno.mkdir(join(path, "child"), { recursive: true });
    await assert.rejects(
      () => writeFileAtomic(path, new Uint8Array([1, 2, 3])),
      (error: Error) => error.message.startsWith(`Cannot write ${path}:`),
    );
    assert.deepEqual(await listDir(dir), ["target"]);
  });
});

Deno.test("writeTextAtomic() writes UTF-8 text", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "note.txt");
    await writeTextAtomic(path, "sum = 36 ✓\n");
    assert.equal(await Deno.readTextFile(path), "sum = 36 ✓\n");
  });
});

Deno.test("writeJsonAtomic() writes pretty JSON ending in a newline", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "meta.json");
    const value = { kind: "cnn", seeds: [0, 10, 42], nested: { ok: true } };
    await writeJsonAtomic(path, value);
    const text = await Deno.readTextFile(path);
    assert.equal(text, JSON.stringify(value, null, 2) + "\n");
    assert.deepEqual(JSON.parse(text), value);
  });
});

Deno.test("writeJsonAtomic() rejects a value that is not JSON-serializable", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.json");
    await assert.rejects(
      () => writeJsonAtomic(path, undefined),
      /Cannot write .*bad\.json: value is not JSON-serializable/,
    );
    assert.equal(await exists(path), false);
  });
});

Deno.test("ensureDir() creates nested directories and tolerates existing ones", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a", "b", "c");
    await ensureDir(path);
    assert.ok((await Deno.stat(path)).isDirectory);
    await ensureDir(path);
    assert.ok((await Deno.stat(path)).isDirectory);
  });
});

Deno.test("ensureDir() rejects a path that is a file, naming the path", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "file");
    await Deno.writeTextFile(path, "x");
    await assert.rejects(
      () => ensureDir(path),
      (error: Error) => error.message.startsWith(`Cannot create directory ${path}:`),
    );
  });
});

Deno.test("exists() reports files, directories and missing paths", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "f.txt");
    await Deno.writeTextFile(file, "x");
    assert.equal(await exists(file), true);
    assert.equal(await exists(dir), true);
    assert.equal(await exists(join(dir, "nope")), false);
  });
});
