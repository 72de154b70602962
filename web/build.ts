/**
 * Builds the browser page into a folder that any static host can serve: `main.js` (the page) and
 * `worker.js` (SumNet with TensorFlow.js, in a Web Worker), both bundled by `deno bundle`,
 * `index.html`, `style.css`, the shipped
 * SumNet checkpoint (`model/`), TensorFlow.js' wasm binaries (`wasm/`) and a few composites of
 * the held-out test set (`samples/`). Everything comes from the repository and the installed npm
 * packages: no network.
 *
 * The folder is written whole into a temporary sibling and renamed into place.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_DIGITS } from "../lib/constants.ts";
import { ensureDir, exists, replaceDir, writeJsonAtomic } from "../lib/io/fsutil.ts";
import {
  DEFAULT_GENERATOR_SEED,
  fileSeed,
  generateComposites,
  GENERATOR_VERSION,
  loadMnist,
  TEST_FILES,
} from "../lib/data/generate.ts";
import { encodePng } from "../lib/io/png.ts";
import type { SampleInfo } from "./samples.ts";

/** The repository root. */
export const REPO_ROOT = fromFileUrl(new URL("..", import.meta.url));

/** Settings of {@linkcode buildSite}. */
export interface BuildOptions {
  /** Output folder (replaced whole). */
  outDir: string;
  /** Checkpoint folder of the model the page uses. */
  modelDir: string;
  /** Test composites shipped for the "random composite" button. */
  samples: number;
  /** Minify the bundle. */
  minify: boolean;
  /** Progress lines. */
  log: (line: string) => void;
}

/** Defaults of {@linkcode buildSite}. */
export const BUILD_DEFAULTS: Readonly<BuildOptions> = Object.freeze({
  outDir: join(REPO_ROOT, "web", "dist"),
  modelDir: join(REPO_ROOT, "trained_models", "sumnet"),
  samples: 200,
  minify: true,
  log: () => {},
});

/** The page's static files, copied as they are. */
const STATIC_FILES = ["index.html", "style.css"];
/** The bundles' entry points: the page (`main.js`) and its reader, a Web Worker (`worker.js`). */
const ENTRIES = [join(REPO_ROOT, "web", "main.ts"), join(REPO_ROOT, "web", "worker.ts")];
/** TensorFlow.js' wasm binaries (plain, SIMD, threaded SIMD): the backend picks one. */
const WASM_FILES = [
  "tfjs-backend-wasm.wasm",
  "tfjs-backend-wasm-simd.wasm",
  "tfjs-backend-wasm-threaded-simd.wasm",
];

/** What was built: every file with its size in bytes. */
export interface BuildReport {
  outDir: string;
  files: Record<string, number>;
  /** Seconds the build took. */
  seconds: number;
}

/** The folder holding the installed `@tensorflow/tfjs-backend-wasm`'s wasm files. */
function wasmDir(): string {
  let resolved: string;
  try {
    resolved = import.meta.resolve("@tensorflow/tfjs-backend-wasm");
  } catch (error) {
    throw new Error(
      `Cannot find npm package @tensorflow/tfjs-backend-wasm (run \`deno install\`): ${error}`,
    );
  }
  if (!resolved.startsWith("file:")) {
    throw new Error(`Cannot use @tensorflow/tfjs-backend-wasm at ${resolved}: not a local file`);
  }
  return dirname(fromFileUrl(resolved));
}

/** Copies one file, with an error naming what is missing. */
async function copyInto(from: string, toDir: string, what: string): Promise<void> {
  try {
    await Deno.copyFile(from, join(toDir, basename(from)));
  } catch (error) {
    throw new Error(`Cannot copy ${what} ${from}: ${(error as Error).message}`);
  }
}

/** Bundles the page's code with `deno bundle` into `outDir` (one `.js` file per entry). */
async function bundle(outDir: string, minify: boolean): Promise<void> {
  const args = ["bundle", "--quiet", "--platform", "browser", "--outdir", outDir];
  if (minify) args.push("--minify");
  args.push(...ENTRIES);
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  }).output();
  if (!result.success) {
    const why = new TextDecoder().decode(result.stderr).trim().split("\n").slice(-12).join("\n");
    throw new Error(`Cannot bundle ${ENTRIES.join(" and ")} with deno bundle:\n${why}`);
  }
}

/**
 * The first `count` composites of the held-out test set, made again from MNIST's test digits
 * exactly as `data/test_data.npy` is (same generator and seed: its first `count` images).
 */
async function testComposites(count: number): Promise<{ png: Uint8Array; info: SampleInfo }> {
  const made = generateComposites(await loadMnist("test"), {
    count,
    seed: fileSeed(DEFAULT_GENERATOR_SEED, TEST_FILES.images),
  });
  const png = await encodePng(made.images, IMAGE_WIDTH, IMAGE_HEIGHT * count);
  const info: SampleInfo = {
    count,
    labels: Array.from(made.labels),
    digits: Array.from(
      { length: count },
      (_, i) => Array.from(made.digits.subarray(i * NUM_DIGITS, (i + 1) * NUM_DIGITS)),
    ),
    source: `the first ${count} images of the held-out test set (${TEST_FILES.images}, ` +
      `${GENERATOR_VERSION}, seed ${DEFAULT_GENERATOR_SEED}), made from MNIST's test digits`,
  };
  if (made.images.length !== count * IMAGE_SIZE) throw new Error("testComposites: bad size");
  return { png, info };
}

/** Sizes of every file under `dir`, by relative path. */
async function listSizes(dir: string, prefix = ""): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) Object.assign(out, await listSizes(path, `${prefix}${entry.name}/`));
    else out[`${prefix}${entry.name}`] = (await Deno.stat(path)).size;
  }
  return out;
}

/**
 * Builds the page (see the module's description).
 *
 * @param options overrides of {@linkcode BUILD_DEFAULTS}
 * @returns the output folder and its files' sizes
 */
export async function buildSite(options: Partial<BuildOptions> = {}): Promise<BuildReport> {
  const settings = { ...BUILD_DEFAULTS, ...options };
  const { outDir, log } = settings;
  const started = performance.now();
  for (const file of ["model.json", "weights.bin"]) {
    if (!await exists(join(settings.modelDir, file))) {
      throw new Error(`Cannot build the page: ${join(settings.modelDir, file)} is missing`);
    }
  }
  await ensureDir(dirname(outDir));
  const tmp = `${outDir}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  await Deno.mkdir(tmp);
  try {
    log(`bundling ${ENTRIES.join(" and ")} with deno bundle`);
    await bundle(tmp, settings.minify);
    for (const file of STATIC_FILES) await copyInto(join(REPO_ROOT, "web", file), tmp, "page file");
    await Deno.mkdir(join(tmp, "model"));
    for (const file of ["model.json", "weights.bin"]) {
      await copyInto(join(settings.modelDir, file), join(tmp, "model"), "checkpoint file");
    }
    await Deno.mkdir(join(tmp, "wasm"));
    const wasm = wasmDir();
    for (const file of WASM_FILES) await copyInto(join(wasm, file), join(tmp, "wasm"), "wasm file");
    log(`writing ${settings.samples} test composites`);
    await Deno.mkdir(join(tmp, "samples"));
    const { png, info } = await testComposites(settings.samples);
    await Deno.writeFile(join(tmp, "samples", "test_composites.png"), png);
    await writeJsonAtomic(join(tmp, "samples", "test_composites.json"), info);
    await replaceDir(tmp, outDir);
  } catch (error) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw error;
  }
  const files = await listSizes(outDir);
  const seconds = (performance.now() - started) / 1000;
  log(`built ${outDir} in ${seconds.toFixed(1)} s`);
  return { outDir, files, seconds };
}
