/**
 * Load check of `deno task predict` and `deno task evaluate`: many images in one `.npy` file
 * (default 100,000: 672 MB) and many PNG files given at once (default 1,000), with the peak
 * resident memory of each command (Linux: the process's VmHWM, read while it runs). The same
 * commands on a tenth of the images show whether memory grows with the file.
 *
 * ```sh
 * deno run -A tools/load_check.ts                       # 100,000 images, 1,000 PNGs, SumNet
 * deno run -A tools/load_check.ts --images 20000 --pngs 200 --model DIR --backend wasm
 * ```
 *
 * tests/load_test.ts runs the same measurement on smaller files.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { parseIntFlag, runMain } from "../lib/cli/args.ts";
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH } from "../lib/constants.ts";
import { ensureDataset, TEST_FILES } from "../lib/data/generate.ts";
import { encodeNpy, encodeNpyHeader, readNpy } from "../lib/io/npy.ts";
import { encodePng } from "../lib/io/png.ts";
import { formatDuration } from "../lib/runtime/progress.ts";

const REPO = new URL("..", import.meta.url).pathname;
/** How often the child's peak memory is read. */
const POLL_MS = 50;

/** What {@linkcode runMeasured} saw. */
export interface Measured {
  code: number;
  stdout: string;
  stderr: string;
  /** Peak resident memory (VmHWM) in bytes; 0 where /proc is not available. */
  peakRss: number;
  seconds: number;
}

/** The peak resident memory of a running process (Linux), or 0. */
async function readPeak(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return kb ? Number(kb[1]) * 1024 : 0;
  } catch {
    return 0; // exited
  }
}

/**
 * Run a digitsum CLI (`cli/<name>.ts`) and measure its wall time and peak resident memory.
 *
 * @param cli the CLI's file name without `.ts`, e.g. `predict`
 * @param args its arguments
 */
export async function runMeasured(
  cli: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Measured> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO, "cli", `${cli}.ts`), ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peakRss = 0;
  let running = true;
  const polling = (async () => {
    while (running) {
      peakRss = Math.max(peakRss, await readPeak(child.pid));
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();
  const output = await child.output();
  running = false;
  await polling;
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
    peakRss,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Write `count` course images (the held-out test images, repeated) as one `.npy` file, and their
 * sums as another, without holding more than one test set in memory.
 *
 * @returns the two paths
 */
export async function writeImageFiles(
  dir: string,
  count: number,
  dataDir: string,
): Promise<{ images: string; labels: string }> {
  const source = await readNpy(join(dataDir, TEST_FILES.images));
  const sourceLabels = await readNpy(join(dataDir, TEST_FILES.labels));
  const pixels = source.data as Uint8Array;
  const n = source.shape[0];
  const images = join(dir, `images_${count}.npy`);
  const labels = join(dir, `labels_${count}.npy`);
  // The header of the whole array, then the images in blocks (the file never sits in memory).
  const file = await Deno.open(images, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, encodeNpyHeader("uint8", [count, IMAGE_HEIGHT, IMAGE_WIDTH]));
    for (let at = 0; at < count; at += n) {
      const k = Math.min(n, count - at);
      await writeAll(file, pixels.subarray(0, k * IMAGE_SIZE));
    }
  } finally {
    file.close();
  }
  const sums = new BigInt64Array(count);
  const values = sourceLabels.data;
  for (let i = 0; i < count; i++) sums[i] = BigInt(Number(values[i % n]));
  await Deno.writeFile(labels, encodeNpy({ dtype: "int64", shape: [count], data: sums }));
  return { images, labels };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

/** Write the first `count` held-out test images as PNG files; returns their paths. */
export async function writePngFiles(
  dir: string,
  count: number,
  dataDir: string,
): Promise<string[]> {
  const source = (await readNpy(join(dataDir, TEST_FILES.images))).data as Uint8Array;
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `image_${String(i).padStart(5, "0")}.png`);
    const k = i % (source.length / IMAGE_SIZE);
    await Deno.writeFile(
      path,
      await encodePng(
        source.subarray(k * IMAGE_SIZE, (k + 1) * IMAGE_SIZE),
        IMAGE_WIDTH,
        IMAGE_HEIGHT,
      ),
    );
    paths.push(path);
  }
  return paths;
}

/** One line of the report. */
function line(what: string, m: Measured, images: number): string {
  const mib = (m.peakRss / 2 ** 20).toFixed(0);
  return `${what.padEnd(34)} exit ${m.code}, peak RSS ${mib.padStart(5)} MiB, ` +
    `${formatDuration(m.seconds)} (${(images / m.seconds).toFixed(0)} images/s)`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      images: { type: "string" },
      pngs: { type: "string" },
      model: { type: "string" },
      backend: { type: "string" },
      dir: { type: "string" },
      "data-dir": { type: "string" },
    },
  });
  const count = parseIntFlag(values.images, "images") ?? 100_000;
  const pngCount = parseIntFlag(values.pngs, "pngs") ?? 1_000;
  const model = values.model ?? join(REPO, "trained_models", "sumnet");
  const dataDir = values["data-dir"] ?? join(REPO, "data");
  await ensureDataset(dataDir);
  const dir = values.dir ?? await Deno.makeTempDir({ prefix: "digitsum_load_" });
  await Deno.mkdir(dir, { recursive: true });
  const backend = values.backend ? ["--backend", values.backend] : [];
  const lines: string[] = [];
  let failed = false;
  for (const n of [Math.max(1, Math.round(count / 10)), count]) {
    const { images, labels } = await writeImageFiles(dir, n, dataDir);
    const size = (await Deno.stat(images)).size;
    console.log(`${images}: ${n} images, ${(size / 2 ** 20).toFixed(0)} MiB`);
    const predict = await runMeasured("predict", [images, "--model", model, ...backend]);
    const printed = predict.stdout.split("\n").filter((l) => / sum \d+$/.test(l)).length;
    lines.push(line(`predict, ${n} images in one .npy`, predict, n) + `, ${printed} sums`);
    const evaluate = await runMeasured("evaluate", [
      "--model",
      model,
      "--images",
      images,
      "--labels",
      labels,
      ...backend,
    ]);
    lines.push(
      line(`evaluate, ${n} images in one .npy`, evaluate, n) +
        `, ${/accuracy=\S+/.exec(evaluate.stdout)?.[0] ?? evaluate.stderr.trim()}`,
    );
    failed ||= predict.code !== 0 || evaluate.code !== 0 || printed !== n;
    await Deno.remove(images);
  }
  const pngs = await writePngFiles(dir, pngCount, dataDir);
  const many = await runMeasured("predict", [...pngs, "--model", model, ...backend]);
  const printed = many.stdout.split("\n").filter((l) => / sum \d+$/.test(l)).length;
  lines.push(line(`predict, ${pngCount} PNG files at once`, many, pngCount) + `, ${printed} sums`);
  failed ||= many.code !== 0 || printed !== pngCount;
  console.log(lines.join("\n"));
  if (!values.dir) await Deno.remove(dir, { recursive: true });
  return failed ? 1 : 0;
}

if (import.meta.main) await runMain("load_check", main);
