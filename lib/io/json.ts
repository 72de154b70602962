/**
 * Reading JSON written by digitsum (run records, configurations, histories): one reader that
 * names the file in its errors, and the small checks every record parser uses.
 *
 * @module
 */

/**
 * Read a JSON file, or `undefined` when it does not exist.
 *
 * @throws Error `Cannot read <path>: ...` when it cannot be read or is not valid JSON.
 */
export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`Cannot read ${path}: invalid JSON (${(error as Error).message})`);
  }
}

/** Whether `value` is a plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `value` is an integer in 0..2^53-1. */
export function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Whether `value` is a finite number or `null` (JSON's NaN, e.g. a diverged loss). */
export function isNumberOrNull(value: unknown): boolean {
  return value === null || (typeof value === "number" && Number.isFinite(value));
}

/**
 * A value read from a file, for a message: JSON cut to 60 characters, `(missing)`, or for a
 * value too deeply nested to print, `(nested too deep)`.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "(missing)";
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    return "(nested too deep)"; // JSON.stringify recurses: a 100,000-deep list overflows it
  }
  return text.length > 60 ? text.slice(0, 60) + "..." : text;
}

/** Whether two values have the same JSON (a value too deeply nested to print differs). */
export function sameJson(a: unknown, b: unknown): boolean {
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}
