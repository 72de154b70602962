/**
 * Small filesystem helpers: atomic writes (temp file in the same directory + rename),
 * directory creation and existence checks.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** The kill point asked for by `DIGITSUM_KILL_AT=<name>:<n>` (tests/faults_test.ts). */
let killPlan: { name: string; at: number; seen: number } | null | undefined;

/**
 * A named moment in the middle of a write (e.g. `checkpoint`: weights written, not yet renamed
 * into place). With `DIGITSUM_KILL_AT=<name>:<n>` in the environment, the process kills itself
 * with SIGKILL the n-th time it reaches that point: fault tests land kills in windows too short
 * to hit from outside. Without the variable this does nothing.
 *
 * @param name The point's name: `atomic-write`, `checkpoint`, `checkpoint-swap` or `report`.
 */
export function killPoint(name: string): void {
  if (killPlan === undefined) {
    let spec: string | undefined;
    try {
      spec = Deno.env.get("DIGITSUM_KILL_AT");
    } catch {
      spec = undefined; // no permission to read the environment: no kill points
    }
    const match = /^([a-z-]+):(\d+)$/.exec(spec ?? "");
    killPlan = match ? { name: match[1], at: Number(match[2]), seen: 0 } : null;
  }
  if (killPlan?.name === name && ++killPlan.seen === killPlan.at) Deno.kill(Deno.pid, "SIGKILL");
}

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
    killPoint("atomic-write");
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

/** Error codes of a folder that cannot take more writes: full, over quota, read-only, denied. */
const STORAGE_CODES = new Set(["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM"]);
/** The same as OS error numbers in messages (Linux), for errors without a `code`. */
const STORAGE_OS_ERRORS = /\(os error (28|122|30|13|1)\)/;

/**
 * Whether `error` (or an error in its `cause` chain) says that the disk is full or the folder
 * cannot be written (ENOSPC, EDQUOT, EROFS, EACCES, EPERM): a problem of the storage, not of the
 * work that was writing.
 *
 * @param error Anything thrown.
 */
export function isStorageError(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && STORAGE_CODES.has(code)) return true;
    if (STORAGE_OS_ERRORS.test(e.message)) return true;
  }
  return false;
}

/** Name of a temp file of {@linkcode writeFileAtomic}: `<name>.<pid>.<random>.tmp`. */
const TEMP_NAME = /^.+\.(\d+)\.[0-9a-z]+\.tmp$/;

/** Whether a process with this id runs on this machine (Linux: /proc; elsewhere: assume so). */
function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound) || Deno.build.os !== "linux";
  }
}

/**
 * Remove the temp files that killed writers left in `dir` (not in subfolders): those of
 * {@linkcode writeFileAtomic}, named `<name>.<pid>.<random>.tmp`. With `deadOnly`, only files
 * whose writer's pid does not run on this machine (for folders that live processes share).
 *
 * @param dir The folder; a missing folder is no error.
 * @param options `deadOnly`: keep the temp files of processes still running here.
 * @returns The names removed.
 */
export async function removeStaleTemps(
  dir: string,
  options: { deadOnly?: boolean } = {},
): Promise<string[]> {
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const match = entry.isFile ? TEMP_NAME.exec(entry.name) : null;
      if (!match || match[1] === String(Deno.pid)) continue;
      if (options.deadOnly && processAlive(Number(match[1]))) continue;
      await Deno.remove(join(dir, entry.name)).catch(() => {});
      removed.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
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
 * @param options `killPoint`: the {@linkcode killPoint} name checked between the two renames
 */
export async function replaceDir(
  tmp: string,
  dir: string,
  options: { killPoint?: string } = {},
): Promise<void> {
  const old = `${dir}.old-${Deno.pid}-${Date.now()}`;
  const had = await exists(dir);
  if (had) await Deno.rename(dir, old);
  // A kill here leaves no `dir`, a complete `tmp` and `old` (fault tests stop here by name).
  if (options.killPoint) killPoint(options.killPoint);
  try {
    await Deno.rename(tmp, dir);
  } catch (error) {
    if (had) await Deno.rename(old, dir);
    throw error;
  }
  if (had) await Deno.remove(old, { recursive: true });
}
