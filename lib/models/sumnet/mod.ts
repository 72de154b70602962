/**
 * SumNet, digitsum's own model: the network (`net.ts`), its training recipe (`recipe.ts`) and its
 * inference core (`core.ts`, also bundled for the browser page) with its digit count (`seen.ts`).
 *
 * @module
 */
export * from "./core.ts";
export * from "./net.ts";
export * from "./recipe.ts";
export * from "./seen.ts";
