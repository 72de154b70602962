/**
 * The one way digitsum's command-line scripts start and end, and read their flags' values: every
 * CLI parses flags with `node:util`'s `parseArgs` and converts the strings here, so that a flag
 * means the same and is refused with the same words everywhere (`--limit 0` is refused by
 * `train` and `sweep` alike; `--lr abc` is refused, never trained with as NaN).
 *
 * @module
 */

/** Largest seed (NumPy's legacy generator takes 32-bit seeds). */
export const MAX_SEED = 2 ** 32 - 1;

/** Digits only: integers are written plainly (no signs, exponents, hex, spaces or fractions). */
const INTEGER_TEXT = /^\d+$/;
/** A decimal number: `0.001`, `1e-3`, `.5`, `3.` (no sign, hex, spaces, Infinity or NaN). */
const NUMBER_TEXT = /^(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** Bounds of {@linkcode parseIntFlag}. */
export interface IntFlagOptions {
  /** Smallest value accepted (default 1). */
  min?: number;
  /** Largest value accepted (default 2^53 - 1). */
  max?: number;
}

/** What an integer flag must be, for messages: `a positive integer`, `an integer 0..4294967295`. */
function integerRule(min: number, max: number): string {
  if (max === Number.MAX_SAFE_INTEGER) {
    return min === 1
      ? "a positive integer"
      : min === 0
      ? "a non-negative integer"
      : `an integer >= ${min}`;
  }
  return `an integer ${min}..${max}`;
}

/**
 * The value of an integer flag such as `--epochs 15`, or `undefined` when it was not given.
 *
 * @param value The flag's text from `parseArgs` (`undefined` when absent).
 * @param name The flag without dashes, for messages.
 * @param options `min` (default 1) and `max` (default 2^53 - 1).
 * @throws Error `--epochs must be a positive integer, got '0'`.
 */
export function parseIntFlag(
  value: string | undefined,
  name: string,
  options: IntFlagOptions = {},
): number | undefined {
  if (value === undefined) return undefined;
  const min = options.min ?? 1;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  const n = INTEGER_TEXT.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`--${name} must be ${integerRule(min, max)}, got '${value}'`);
  }
  return n;
}

/**
 * The value of a positive number flag such as `--lr 1e-3`, or `undefined` when not given.
 *
 * @param value The flag's text from `parseArgs`.
 * @param name The flag without dashes, for messages.
 * @throws Error `--lr must be a positive number, got 'abc'` (also for 0, NaN and Infinity).
 */
export function parsePositiveFlag(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = NUMBER_TEXT.test(value) ? Number(value) : NaN;
  if (!(Number.isFinite(n) && n > 0)) {
    throw new Error(`--${name} must be a positive number, got '${value}'`);
  }
  return n;
}

/**
 * The value of a limit flag such as `--limit 512` or `--limit all`: a positive integer, `null`
 * for `all` (no limit), or `undefined` when not given.
 *
 * @param value The flag's text from `parseArgs`.
 * @param name The flag without dashes, for messages.
 * @throws Error `--limit must be a positive integer or 'all', got '0'`.
 */
export function parseLimitFlag(value: string | undefined, name: string): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === "all") return null;
  const n = INTEGER_TEXT.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new Error(`--${name} must be a positive integer or 'all', got '${value}'`);
  }
  return n;
}

/**
 * A comma-separated list flag such as `--models a,b` (blanks around items are dropped).
 *
 * @throws Error `--models needs a comma-separated list, got ','`.
 */
export function parseListFlag(value: string | undefined, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!items.length) throw new Error(`--${name} needs a comma-separated list, got '${value}'`);
  return items;
}

/**
 * A seed flag (`--seed 42`): an integer 0..2^32-1.
 *
 * @throws Error `--seed must be an integer 0..4294967295, got '-1'`.
 */
export function parseSeedFlag(value: string | undefined, name = "seed"): number | undefined {
  return parseIntFlag(value, name, { min: 0, max: MAX_SEED });
}

/**
 * A list of seeds (`--seeds 0,10,42`), each an integer 0..2^32-1.
 *
 * @throws Error `--seeds must be integers 0..4294967295, got 'x' in '1,x'`.
 */
export function parseSeedsFlag(value: string | undefined, name = "seeds"): number[] | undefined {
  return parseListFlag(value, name)?.map((item) => {
    const n = INTEGER_TEXT.test(item) ? Number(item) : NaN;
    if (!Number.isSafeInteger(n) || n > MAX_SEED) {
      throw new Error(`--${name} must be integers 0..${MAX_SEED}, got '${item}' in '${value}'`);
    }
    return n;
  });
}

/**
 * Run a CLI's `main`, exit with its status (0 when it returns nothing) and turn an error into
 * one line, `<name>: <message>`, and exit status 1. Exiting explicitly also ends wasm worker
 * threads and open handles, so a finished command never hangs.
 */
export async function runMain(
  name: string,
  main: () => Promise<number | void>,
): Promise<never> {
  try {
    const status = await main();
    Deno.exit(typeof status === "number" ? status : 0);
  } catch (error) {
    console.error(`${name}: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
