/**
 * The flags `deno task train` and `deno task sweep` share, defined once: their `parseArgs`
 * options, their help lines and one reader that turns their text into values with the parsers
 * of `args.ts` (so `--lr abc` and `--limit 0` are refused with the same words by both).
 *
 * @module
 */
import { parseBackendName } from "../runtime/backend.ts";
import { parseIntFlag, parseLimitFlag, parsePositiveFlag } from "./args.ts";

/** `parseArgs` options of the shared training flags (all take a value). */
export const TRAINING_FLAGS = {
  epochs: { type: "string" },
  limit: { type: "string" },
  "test-limit": { type: "string" },
  "batch-size": { type: "string" },
  lr: { type: "string" },
  backend: { type: "string" },
  "data-dir": { type: "string" },
  out: { type: "string" },
} as const;

/** The shared training flags' values; `undefined` where a flag was not given. */
export interface TrainingFlags {
  epochs?: number;
  /** Training images per run; `null` for `all`. */
  limit?: number | null;
  /** Held-out test images scored per run; `null` for `all`. */
  testLimit?: number | null;
  batchSize?: number;
  learningRate?: number;
  /** A backend name (checked), e.g. `wasm`. */
  backend?: string;
  dataDir?: string;
  out?: string;
}

/**
 * Read the shared training flags from `parseArgs` values.
 *
 * @throws Error `--lr must be a positive number, got 'abc'` and the like.
 */
export function parseTrainingFlags(
  values: { [K in keyof typeof TRAINING_FLAGS]?: string },
): TrainingFlags {
  if (values.backend !== undefined) parseBackendName(values.backend);
  return {
    epochs: parseIntFlag(values.epochs, "epochs"),
    limit: parseLimitFlag(values.limit, "limit"),
    testLimit: parseLimitFlag(values["test-limit"], "test-limit"),
    batchSize: parseIntFlag(values["batch-size"], "batch-size"),
    learningRate: parsePositiveFlag(values.lr, "lr"),
    backend: values.backend,
    dataDir: values["data-dir"],
    out: values.out,
  };
}

/** The defaults that the help lines of {@link trainingFlagsHelp} name. */
export interface TrainingFlagDefaults {
  epochs: string;
  batchSize: number;
  learningRate: string;
  dataDir: string;
  out: string;
  /** What `--limit` limits, e.g. `train on the first N training images only`. */
  limit: string;
}

/** The help lines of the shared training flags, with the defaults of one command. */
export function trainingFlagsHelp(defaults: TrainingFlagDefaults): string {
  return [
    `  --epochs N          epochs (default ${defaults.epochs})`,
    `  --limit N|all       ${defaults.limit} (default all)`,
    "  --test-limit N|all  score only the first N held-out test images (default all 10,000)",
    `  --batch-size N      batch size (default ${defaults.batchSize})`,
    `  --lr X              Adam learning rate (default ${defaults.learningRate})`,
    "  --backend NAME      auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)",
    `  --data-dir DIR      directory of the .npy files (default ${defaults.dataDir})`,
    `  --out DIR           ${defaults.out}`,
  ].join("\n");
}
