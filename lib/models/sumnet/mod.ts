/**
 * SumNet, digitsum's own model: the network (`net.ts`), its training recipe (`recipe.ts`) and its
 * inference core (`core.ts`, also bundled for the browser page).
 *
 * @module
 */
export * from "./core.ts";
export * from "./net.ts";
export * from "./recipe.ts";
