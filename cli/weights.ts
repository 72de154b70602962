/**
 * `deno task weights vgg11 [--out PATH] [--from FILE] [--url URL] [--force]`
 *
 * Installs torchvision's VGG11 ImageNet (IMAGENET1K_V1) feature weights for the VGG regressor
 * at `data/weights/vgg11.safetensors` (or `--out`, or env DIGITSUM_VGG_WEIGHTS):
 * - by default downloads `timm/vgg11.tv_in1k` (torchvision's weights in safetensors form, same
 *   `features.*` names) from Hugging Face, pinned to a commit, and checks the SHA-256 that
 *   Hugging Face publishes for it;
 * - with `--from FILE`, checks and installs a safetensors file you already have (that download,
 *   or a torchvision export).
 * Either way only the 16 `features.*` tensors are kept (float32, 37 MB), after checking names,
 * shapes, dtypes and finiteness, and the file is written atomically.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { ensureDir, exists, writeFileAtomic } from "../lib/io/fsutil.ts";
import { encodeSafetensors, readSafetensors, type SafeTensorInput } from "../lib/io/safetensors.ts";
import {
  validateVgg11Features,
  VGG11_FEATURE_KEYS,
  VGG_TORCH_EXPORT,
  VGG_WEIGHTS_COMMAND,
  vggWeightsPath,
} from "../lib/models/vgg.ts";

/** The Hugging Face repository mirroring torchvision's VGG11 IMAGENET1K_V1 weights. */
export const VGG11_MIRROR_REPO = "timm/vgg11.tv_in1k";
/** The commit of that repository that added the weights ("Add model", 2023-04-25). */
export const VGG11_MIRROR_REVISION = "38b46049b490ec2bdb6d4d32b8354c74977f3347";
/** Download URL of the mirror's model.safetensors, pinned to {@link VGG11_MIRROR_REVISION}. */
export const VGG11_MIRROR_URL =
  `https://huggingface.co/${VGG11_MIRROR_REPO}/resolve/${VGG11_MIRROR_REVISION}/model.safetensors`;
/** SHA-256 of that file as Hugging Face publishes it (Git LFS details on the file's page). */
export const VGG11_MIRROR_SHA256 =
  "682c023808812148d4e60c76d80ad83dbeaf5d50eb1a952a0b836895003151e5";
/** The file's size as Hugging Face lists it (531 MB). */
const MIRROR_SIZE_TEXT = "531 MB";
const USAGE = `Usage: ${VGG_WEIGHTS_COMMAND} [--out PATH] [--from FILE] [--url URL] [--force]\n` +
  `  --out PATH   where to install (default: env DIGITSUM_VGG_WEIGHTS or data/weights/vgg11.safetensors)\n` +
  `  --from FILE  install from a local safetensors file instead of downloading\n` +
  `  --url URL    download from another mirror (the SHA-256 check still applies)\n` +
  `  --force      replace an existing valid file`;
/** Bytes between two progress lines while downloading. */
const PROGRESS_STEP = 50 * 1024 * 1024;

/** Options of {@link installVggWeights}. */
export interface InstallOptions {
  /** Destination (default: {@link vggWeightsPath}). */
  out?: string;
  /** Local source file; when absent the mirror is downloaded. */
  from?: string;
  /** Download URL (default {@link VGG11_MIRROR_URL}). */
  url?: string;
  /** Expected SHA-256 of the download (default {@link VGG11_MIRROR_SHA256}). */
  sha256?: string;
  /** Replace an existing valid destination. */
  force?: boolean;
  /** Progress and status lines (default: `console.error`). */
  log?: (line: string) => void;
}

/** What {@link installVggWeights} did. */
export interface InstallResult {
  /** The installed file. */
  out: string;
  /** `installed`, or `present` when a valid file was already there (no `force`). */
  status: "installed" | "present";
  /** SHA-256 of the source (download or `--from` file); absent when already present. */
  sourceSha256?: string;
  /** Whether the source is byte-identical to the mirror's published file. */
  matchesMirror?: boolean;
}

/** How to provide the file by hand, for error messages. */
function manualHelp(out: string): string {
  return [
    `Provide the file manually instead:`,
    `  1. on a machine with internet, download ${VGG11_MIRROR_URL}`,
    `     (${MIRROR_SIZE_TEXT}, SHA-256 ${VGG11_MIRROR_SHA256}),`,
    `     or export it from torchvision with PyTorch:`,
    `       ${VGG_TORCH_EXPORT[0]}`,
    `       ${VGG_TORCH_EXPORT[1]}`,
    `  2. copy it here and run: ${VGG_WEIGHTS_COMMAND} --from path/to/file.safetensors` +
    (out === vggWeightsPath() ? "" : ` --out ${out}`),
  ].join("\n");
}

/** SHA-256 (hex) of a file, streamed. */
async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(4 * 1024 * 1024);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** Whether `path` holds valid VGG11 features. */
async function isValidWeightsFile(path: string): Promise<boolean> {
  try {
    const tensors = await readSafetensors(path, { include: (k) => k.startsWith("features.") });
    validateVgg11Features(tensors, path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Validate `source` and write its VGG11 features (float32) to `out` atomically.
 *
 * @param source A safetensors file with torchvision VGG11 `features.*` tensors.
 * @param out Destination file.
 * @param sourceSha256 The source's SHA-256, recorded in the output's metadata.
 */
async function installFrom(source: string, out: string, sourceSha256: string): Promise<void> {
  const tensors = validateVgg11Features(
    await readSafetensors(source, { include: (k) => k.startsWith("features.") }),
    source,
  );
  const record: Record<string, SafeTensorInput> = {};
  for (const key of VGG11_FEATURE_KEYS) {
    const tensor = tensors.get(key)!;
    record[key] = { dtype: "F32", shape: tensor.shape, data: tensor.data };
  }
  const bytes = encodeSafetensors(record, {
    content: "torchvision vgg11 IMAGENET1K_V1 features",
    source_sha256: sourceSha256,
  });
  await ensureDir(dirname(out) || ".");
  await writeFileAtomic(out, bytes);
}

/** Download `url` to `path`, hashing on the way; returns the SHA-256. */
async function download(
  url: string,
  path: string,
  log: (line: string) => void,
): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new Error(`network error (${(error as Error).message})`);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`HTTP ${response.status} ${response.statusText}`);
  }
  const total = Number(response.headers.get("content-length") ?? 0);
  const hash = createHash("sha256");
  const file = await Deno.open(path, { write: true, createNew: true });
  let received = 0;
  let nextReport = PROGRESS_STEP;
  try {
    for await (const chunk of response.body) {
      hash.update(chunk);
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
      received += chunk.length;
      if (received >= nextReport) {
        const of = total ? ` of ${(total / 1e6).toFixed(0)} MB` : "";
        log(`  ${(received / 1e6).toFixed(0)} MB${of}`);
        nextReport += PROGRESS_STEP;
      }
    }
  } catch (error) {
    throw new Error(`download interrupted after ${received} bytes (${(error as Error).message})`);
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/**
 * Install the VGG11 feature weights: from `options.from`, else by downloading the mirror.
 *
 * @param options Source, destination and checks.
 * @returns What was done.
 */
export async function installVggWeights(options: InstallOptions = {}): Promise<InstallResult> {
  const out = vggWeightsPath(options.out);
  const log = options.log ?? ((line: string) => console.error(line));
  if (!options.force && !options.from && await exists(out) && await isValidWeightsFile(out)) {
    log(`${out} already holds valid VGG11 features (use --force to replace it)`);
    return { out, status: "present" };
  }
  if (options.from) {
    if (!await exists(options.from)) {
      throw new Error(`Cannot read ${options.from}: file not found\n${manualHelp(out)}`);
    }
    const sourceSha256 = await sha256File(options.from);
    const matchesMirror = sourceSha256 === VGG11_MIRROR_SHA256;
    await installFrom(options.from, out, sourceSha256);
    log(
      matchesMirror
        ? `${options.from} is ${VGG11_MIRROR_REPO} (SHA-256 matches); installed ${out}`
        : `${options.from}: SHA-256 ${sourceSha256} (not the mirror's file; names, shapes and ` +
          `dtypes checked); installed ${out}`,
    );
    return { out, status: "installed", sourceSha256, matchesMirror };
  }
  const url = options.url ?? VGG11_MIRROR_URL;
  const expected = (options.sha256 ?? VGG11_MIRROR_SHA256).toLowerCase();
  await ensureDir(dirname(out) || ".");
  const temp = join(dirname(out) || ".", `.vgg11-download.${Deno.pid}.tmp`);
  log(`Downloading ${url} (${MIRROR_SIZE_TEXT}) ...`);
  try {
    let sourceSha256: string;
    try {
      sourceSha256 = await download(url, temp, log);
    } catch (error) {
      throw new Error(
        `Cannot download ${url}: ${(error as Error).message}\n${manualHelp(out)}`,
      );
    }
    if (sourceSha256 !== expected) {
      throw new Error(
        `Cannot use the download from ${url}: SHA-256 ${sourceSha256}, expected ${expected} ` +
          `(corrupted or changed file)\n${manualHelp(out)}`,
      );
    }
    await installFrom(temp, out, sourceSha256);
    log(`SHA-256 verified; installed ${out}`);
    return { out, status: "installed", sourceSha256, matchesMirror: true };
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

/** Command-line entry point. */
async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        from: { type: "string" },
        url: { type: "string" },
        force: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  const [name, ...rest] = parsed.positionals;
  if (name !== "vgg11" || rest.length > 0) {
    console.error(
      `${name ? `Unknown weights '${[name, ...rest].join(" ")}'` : "Missing weights name"}: ` +
        `expected 'vgg11'\n${USAGE}`,
    );
    return 2;
  }
  try {
    await installVggWeights({
      out: parsed.values.out,
      from: parsed.values.from,
      url: parsed.values.url,
      force: parsed.values.force,
    });
    return 0;
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
