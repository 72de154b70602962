/**
 * digitsum's library: everything the CLIs, notebooks, sweep, bench and tests use.
 *
 * @module
 */
export * from "./constants.ts";
export * from "./fsutil.ts";
export * from "./npy.ts";
export * from "./idx.ts";
export * from "./png.ts";
export * from "./safetensors.ts";
export * from "./numpy_random.ts";
export * from "./generate.ts";
export * from "./data.ts";
export * from "./backend.ts";
export * from "./seed.ts";
export * from "./models.ts";
export * from "./train.ts";
export * from "./checkpoint.ts";
export * from "./experiment.ts";
export * from "./progress.ts";
export * from "./mnist.ts";
export * from "./sumnet.ts";
