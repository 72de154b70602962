/**
 * Seeding: one call makes every source of randomness in digitsum reproducible.
 *
 * TensorFlow.js draws a fresh generator seed from `Math.random()` whenever an op gets no explicit
 * seed (layer initialisers, `randomUniform` behind dropout, shuffles), so replacing
 * `Math.random` with a seeded `seedrandom` generator fixes initial weights, dropout masks and
 * shuffles at once: same seed, same backend -> identical weights and metrics.
 */
import seedrandom from "seedrandom";

/** Serialisable state of the global generator (for resuming a run exactly). */
export type RngState = Record<string, unknown>;

interface StatefulPrng {
  (): number;
  state(): RngState;
}

let current: StatefulPrng | undefined;

/**
 * Seed every random number generator digitsum uses (the study's `seed_everything`).
 *
 * @param seed any integer; 0 is a valid seed (it is stringified, never treated as "no seed").
 */
export function seedEverything(seed: number): void {
  if (!Number.isFinite(seed)) {
    throw new Error(`seedEverything(): seed must be a number, got ${seed}`);
  }
  // With `global: true` seedrandom returns the seed string and installs the generator (with its
  // `state()` method) as Math.random.
  seedrandom(`digitsum:${seed}`, { global: true, state: true });
  current = Math.random as unknown as StatefulPrng;
}

/** The global generator's current state, or `undefined` when `seedEverything` was never called. */
export function rngState(): RngState | undefined {
  return current?.state();
}

/** Whether `state` has the shape of {@link rngState}'s (seedrandom's ARC4: i, j, S[256]). */
export function isRngState(state: unknown): state is RngState {
  const byte = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 256;
  const s = state as { i?: unknown; j?: unknown; S?: unknown };
  return typeof state === "object" && state !== null && byte(s.i) && byte(s.j) &&
    Array.isArray(s.S) && s.S.length === 256 && s.S.every(byte);
}

/** Restore a state from {@link rngState}: the following draws repeat those after the snapshot. */
export function restoreRngState(state: RngState): void {
  if (!isRngState(state)) throw new Error("restoreRngState(): not a generator state");
  seedrandom("", { global: true, state });
  current = Math.random as unknown as StatefulPrng;
}
