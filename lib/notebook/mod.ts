/**
 * What the notebooks import as `nb`: settings, display, training, results and probes, one module
 * each in this folder.
 *
 * @module
 */
export * from "./settings.ts";
export * from "./kernel.ts";
export * from "./display.ts";
export * from "./figures.ts";
export * from "./window.ts";
export * from "./training.ts";
export * from "./results.ts";
export * from "./probes.ts";
