/**
 * Small filesystem helpers: atomic writes (temp file in the same directory + rename),
 * directory creation and existence checks.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Random suffix so that concurrent writers never share a temp file. */
function tempPathFor(path: string): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  const suffix = `${Deno.pid}.${random[0].toString(36)}${random[1].toString(36)}.tmp`;
  return join(dirname(path), `${basename(path)}.${suffix}`);
}

/** Short description of an unknown error, for messages. */
function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Write `data` to `path` atomically: the bytes go to `<path>.<pid>.<random>.tmp` in the same
 * directory, are fsynced (best effort), and the temp file is renamed over `path`. Readers see
 * either the old file or the complete new one, never a partial write. On failure the temp file
 * is removed and an error naming `path` is thrown.
 *
 * @param path Destination file; its directory must exist.
 * @param data Bytes to write.
 */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tempPath = tempPathFor(path);
  try {
    const file = await Deno.open(tempPath, { write: true, createNew: true, mode: 0o644 });
    try {
      let written = 0;
      while (written < data.length) {
        written += await file.write(data.subarray(written));
      }
      try {
        await file.sync();
      } catch {
        // fsync is best effort (some filesystems do not support it).
      }
    } finally {
      file.close();
    }
    await Deno.rename(tempPath, path);
  } catch (error) {
    try {
      await Deno.remove(tempPath);
    } catch {
      // The temp file may never have been created.
    }
    throw new Error(`Cannot write ${path}: ${describeError(error)}`, { cause: error });
  }
}

/**
 * Write UTF-8 `text` to `path` atomically (see {@linkcode writeFileAtomic}).
 *
 * @param path Destination file; its directory must exist.
 * @param text Text to write, encoded as UTF-8.
 */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(text));
}

/**
 * Write `value` as pretty-printed JSON (2-space indent) followed by a newline, atomically.
 *
 * @param path Destination file; its directory must exist.
 * @param value Any JSON-serializable value.
 */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) {
    throw new Error(`Cannot write ${path}: value is not JSON-serializable`);
  }
  await writeTextAtomic(path, text + "\n");
}

/**
 * Create directory `path` and any missing parents; no-op when it already exists.
 *
 * @param path Directory to create.
 */
export async function ensureDir(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true });
  } catch (error) {
    throw new Error(`Cannot create directory ${path}: ${describeError(error)}`, { cause: error });
  }
}

/**
 * Whether `path` exists (file, directory or anything else). Permission and other unexpected
 * errors are rethrown rather than reported as "missing".
 *
 * @param path Path to check.
 * @returns `true` when something exists at `path`.
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Move a fully written temporary directory `tmp` into place at `dir`, replacing an older one:
 * the old directory is renamed aside first and put back if the move fails, so `dir` is always
 * either the old or the new directory, never a mix.
 *
 * @param tmp the complete new directory (a sibling of `dir`)
 * @param dir its final path
 */
export async function replaceDir(tmp: string, dir: string): Promise<void> {
  const old = `${dir}.old-${Deno.pid}-${Date.now()}`;
  const had = await exists(dir);
  if (had) await Deno.rename(dir, old);
  try {
    await Deno.rename(tmp, dir);
  } catch (error) {
    if (had) await Deno.rename(old, dir);
    throw error;
  }
  if (had) await Deno.remove(old, { recursive: true });
}
