/**
 * A port of NumPy's legacy global random generator (`np.random.seed`, `np.random.shuffle`),
 * enough to draw the exact permutation the original study used to split its data.
 *
 * NumPy's legacy `RandomState` is MT19937. Seeding with an integer uses the reference
 * `init_genrand` (Knuth's linear recurrence), not `init_by_array`; shuffling a 1-d array walks
 * from the end and swaps item `i` with item `random_interval(i)`, which draws 32-bit words and
 * rejects those above `i` after masking to the smallest enclosing power of two minus one.
 *
 * @module
 */

/** MT19937 state length in 32-bit words. */
const N = 624;
/** MT19937 middle word offset. */
const M = 397;
/** Twist matrix constant. */
const MATRIX_A = 0x9908b0df;
/** Most significant bit of a word. */
const UPPER_MASK = 0x80000000;
/** Lower 31 bits of a word. */
const LOWER_MASK = 0x7fffffff;
/** Largest value accepted as a legacy seed. */
const MAX_SEED = 0xffffffff;

/**
 * The Mersenne Twister MT19937, bit-exact with NumPy's legacy `RandomState`.
 *
 * @example
 * ```ts
 * const mt = new MT19937(42);
 * mt.nextUint32(); // 1608637542, as np.random.seed(42); np.random.randint(0, 2**32, dtype=np.uint64)
 * ```
 */
export class MT19937 {
  /** The 624-word state. */
  readonly #key = new Uint32Array(N);
  /** Index of the next word to temper; N means the state must be regenerated. */
  #pos = N;

  /** Seeds like `np.random.seed(seed)` for an integer seed in 0..2**32-1. */
  constructor(seed = 5489) {
    this.seed(seed);
  }

  /**
   * Re-seeds the generator as `np.random.seed(seed)` does for an integer seed (`init_genrand`).
   * Throws a RangeError for a seed that is not an integer in 0..4294967295, as NumPy does.
   */
  seed(seed: number): void {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new RangeError(`MT19937 seed must be an integer in 0..${MAX_SEED}, got ${seed}`);
    }
    const key = this.#key;
    key[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = key[i - 1] ^ (key[i - 1] >>> 30);
      key[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.#pos = N;
  }

  /**
   * Seeds from an array of 32-bit words (the reference `init_by_array`), as NumPy does when
   * `np.random.seed` receives an array.
   */
  seedByArray(initKey: ArrayLike<number>): void {
    if (initKey.length === 0) {
      throw new RangeError("MT19937 seedByArray: the key must not be empty");
    }
    this.seed(19650218);
    const key = this.#key;
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, initKey.length); k > 0; k--) {
      const prev = key[i - 1] ^ (key[i - 1] >>> 30);
      key[i] = ((key[i] ^ Math.imul(prev, 1664525)) + (initKey[j] >>> 0) + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        key[0] = key[N - 1];
        i = 1;
      }
      if (j >= initKey.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = key[i - 1] ^ (key[i - 1] >>> 30);
      key[i] = ((key[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        key[0] = key[N - 1];
        i = 1;
      }
    }
    key[0] = 0x80000000;
    this.#pos = N;
  }

  /** Regenerates the 624 words of state (the "twist"). */
  #generate(): void {
    const key = this.#key;
    let kk = 0;
    for (; kk < N - M; kk++) {
      const y = (key[kk] & UPPER_MASK) | (key[kk + 1] & LOWER_MASK);
      key[kk] = key[kk + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; kk < N - 1; kk++) {
      const y = (key[kk] & UPPER_MASK) | (key[kk + 1] & LOWER_MASK);
      key[kk] = key[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (key[N - 1] & UPPER_MASK) | (key[0] & LOWER_MASK);
    key[N - 1] = key[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.#pos = 0;
  }

  /** Returns the next 32-bit output as an unsigned integer. */
  nextUint32(): number {
    if (this.#pos >= N) this.#generate();
    let y = this.#key[this.#pos++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Returns a double in [0, 1) with 53 random bits, as `np.random.random_sample()`. */
  nextDouble(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /**
   * Returns an integer uniform in 0..max inclusive, as NumPy's `random_interval(max)`: 32-bit
   * draws masked to the smallest `2**k - 1 >= max`, rejecting values above `max`.
   * Only `max` up to 2**32-1 is supported (NumPy switches to 64-bit draws beyond that).
   */
  randomInterval(max: number): number {
    if (!Number.isInteger(max) || max < 0 || max > MAX_SEED) {
      throw new RangeError(`randomInterval: max must be an integer in 0..${MAX_SEED}, got ${max}`);
    }
    if (max === 0) return 0;
    let mask = max;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    let value: number;
    do {
      value = (this.nextUint32() & mask) >>> 0;
    } while (value > max);
    return value;
  }

  /** Shuffles `array` in place as NumPy's legacy `shuffle` does for a 1-d array. */
  shuffle(array: { length: number; [index: number]: number }): void {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.randomInterval(i);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
  }
}

/**
 * The permutation `np.random.seed(seed); a = np.arange(n); np.random.shuffle(a)` produces
 * (the same as `np.random.permutation(n)` after seeding).
 *
 * @param n length of the permutation (0..2**31-1)
 * @param seed integer seed in 0..2**32-1
 * @returns the permuted indices 0..n-1
 *
 * @example
 * ```ts
 * legacyPermutation(10, 42); // Int32Array [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]
 * ```
 */
export function legacyPermutation(n: number, seed: number): Int32Array {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
    throw new RangeError(`legacyPermutation: n must be a non-negative integer, got ${n}`);
  }
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  new MT19937(seed).shuffle(out);
  return out;
}
