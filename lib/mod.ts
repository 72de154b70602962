/**
 * digitsum's library: everything the CLIs, notebooks, sweep, bench and tests use.
 *
 * @module
 */
export * from "./constants.ts";
export * from "./io/fsutil.ts";
export * from "./io/npy.ts";
export * from "./io/idx.ts";
export * from "./io/png.ts";
export * from "./io/safetensors.ts";
export * from "./data/numpy_random.ts";
export * from "./data/generate.ts";
export * from "./data/loader.ts";
export * from "./runtime/backend.ts";
export * from "./runtime/seed.ts";
export * from "./models/registry.ts";
export * from "./training/train.ts";
export * from "./training/checkpoint.ts";
export * from "./training/experiment.ts";
export * from "./runtime/progress.ts";
export * from "./data/strips.ts";
export * from "./models/sumnet/mod.ts";
