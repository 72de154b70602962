/**
 * Training and inference speed of the study's CNNs on each backend, batch 64 of random
 * 40x168x1 images, through the project's own training step (lib/training/train.ts: `variableGrads` of
 * `lossFor` + `TorchAdam.apply`) and inference (`model.apply(x, { training: false })`).
 *
 * deno task bench [--backends wasm,cpu] [--models cnn-regressor,cnn-classifier]
 *                 [--batches N] [--warmup N] [--batch-size N] [--threads N] [--json] [--profile]
 *                 [--wasm-tuning '{"inputGradMatMulRatio":0}'] [--compare-native-kernels]
 *
 * `--wasm-tuning` measures every model on wasm a second time, in the same run, with those
 * settings of lib/runtime/wasm_kernels.ts (e.g. a kernel path switched off), and prints the ratio.
 * `--compare-native-kernels` likewise measures every model on `tensorflow` a second time with
 * digitsum's kernel library (lib/runtime/native/) switched off.
 *
 * The last line is always `train_img_s=<x> infer_img_s=<y>` for the CNN regressor on the first
 * backend (by default the one `initBackend("auto")` picks).
 *
 * @module
 */

import { parseArgs } from "node:util";
import os from "node:os";
import process from "node:process";
import * as tf from "@tensorflow/tfjs";
import {
  type BackendInfo,
  initBackend,
  parseBackendName,
  parseThreads,
} from "../lib/runtime/backend.ts";
import { BATCH_SIZE, IMAGE_HEIGHT, IMAGE_WIDTH, NUM_SUMS } from "../lib/constants.ts";
import { lossFor, TorchAdam, trainableVariables } from "../lib/training/train.ts";
import { setWasmKernelTuning, type WasmKernelTuning } from "../lib/runtime/wasm_kernels.ts";
import { NATIVE_TORCH_ADAM, setNativeKernelLibraryEnabled } from "../lib/runtime/native_kernels.ts";
import { exists } from "../lib/io/fsutil.ts";
import { encodeSafetensors, type SafeTensorInput } from "../lib/io/safetensors.ts";
import { VGG11_FEATURE_SHAPES, vggWeightsPath } from "../lib/models/vgg.ts";
import { buildModel, modelInfo } from "../lib/models/mod.ts";

/** Models benchmarked by default. */
const DEFAULT_MODELS = ["cnn-regressor", "cnn-classifier"];
/** Timed batches per measurement by default (after the warm-up). */
const DEFAULT_BATCHES = 5;
/** Untimed batches first (XNNPACK operator creation, first-use allocations). */
const DEFAULT_WARMUP = 2;
/** The cpu backend needs ~80 s for a training batch of 8: it gets 8 images and 1 batch. */
const CPU_BATCH_SIZE = 8;

/** One backend x model measurement. */
export interface BenchResult {
  backend: string;
  threads: number;
  model: string;
  batchSize: number;
  batches: number;
  trainImagesPerSecond: number;
  trainMsPerBatch: number;
  inferImagesPerSecond: number;
  inferMsPerBatch: number;
  /** Process CPU time per training batch (all threads), ms. */
  trainCpuMsPerBatch: number;
}

function usage(): string {
  return "usage: deno task bench [--backends auto,wasm,cpu,webgpu,tensorflow] " +
    "[--models cnn-regressor,cnn-classifier] [--batches N] [--warmup N] [--batch-size N] " +
    "[--threads N] [--json] [--profile] [--pytorch=auto|yes|no] [--python PATH] " +
    "[--wasm-tuning JSON] [--compare-native-kernels]";
}

function positiveInt(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`Invalid --${flag} '${value}': expected a non-negative integer`);
  }
  return n;
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Random images in [0, 1] and random sums (class indices for the classifier). */
function randomBatch(batchSize: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  return tf.tidy(() => ({
    x: tf.randomUniform([batchSize, IMAGE_HEIGHT, IMAGE_WIDTH, 1], 0, 1) as tf.Tensor4D,
    y: tf.randomUniform([batchSize], 0, NUM_SUMS, "int32").toFloat() as tf.Tensor1D,
  }));
}

/**
 * The VGG regressor's frozen ImageNet features where they are installed, else random features of
 * the same shapes in a temporary safetensors file (their values do not change the speed); the
 * table says which.
 */
async function vggWeightsForBench(kind: string): Promise<string | undefined> {
  if (kind !== "vgg-regressor") return undefined;
  const real = vggWeightsPath();
  if (await exists(real)) return real;
  const tensors: Record<string, SafeTensorInput> = {};
  let state = 1;
  for (const [key, shape] of Object.entries(VGG11_FEATURE_SHAPES)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const scale = key.endsWith(".weight") ? Math.sqrt(2 / (size / shape[0])) : 0.01;
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      data[i] = (state / 4294967296 - 0.5) * 2 * scale;
    }
    tensors[key] = { dtype: "F32", shape: [...shape], data };
  }
  const path = await Deno.makeTempFile({ prefix: "digitsum-bench-vgg-", suffix: ".safetensors" });
  await Deno.writeFile(path, encodeSafetensors(tensors));
  console.log(`vgg-regressor: ${real} not installed; timing random features of the same shapes`);
  return path;
}

async function measure(
  info: BackendInfo,
  kind: string,
  options: { batchSize: number; batches: number; warmup: number; profile: boolean },
): Promise<BenchResult> {
  const task = modelInfo(kind).task;
  const model = await buildModel(kind, { weightsPath: await vggWeightsForBench(kind) });
  const variables = trainableVariables(model);
  const optimizer = new TorchAdam(variables, { learningRate: 1e-3 });
  const { x, y } = randomBatch(options.batchSize);
  // Reads are asynchronous: the webgpu backend cannot read synchronously under Deno.
  const trainStep = async () => {
    const { value, grads } = tf.variableGrads(
      () => lossFor(model.apply(x, { training: true }) as tf.Tensor, y, task),
      variables,
    );
    optimizer.apply(variables.map((v) => grads[v.name]));
    const loss = (await value.data())[0];
    tf.dispose([value, grads]);
    if (!Number.isFinite(loss)) throw new Error(`${kind} on ${info.name}: loss is ${loss}`);
  };
  const inferStep = async () => {
    const out = tf.tidy(() => model.apply(x, { training: false }) as tf.Tensor);
    await out.data();
    out.dispose();
  };
  for (let i = 0; i < options.warmup; i++) await trainStep();
  if (options.profile) await printProfile(trainStep, `${kind} on ${info.name}: one training step`);
  let cpu0 = cpuMs();
  let t0 = performance.now();
  for (let i = 0; i < options.batches; i++) await trainStep();
  const trainMs = (performance.now() - t0) / options.batches;
  const trainCpuMs = (cpuMs() - cpu0) / options.batches;
  for (let i = 0; i < options.warmup; i++) await inferStep();
  cpu0 = cpuMs();
  t0 = performance.now();
  for (let i = 0; i < options.batches; i++) await inferStep();
  const inferMs = (performance.now() - t0) / options.batches;
  optimizer.dispose();
  model.dispose();
  tf.dispose([x, y]);
  return {
    backend: info.name,
    threads: info.threads,
    model: kind,
    batchSize: options.batchSize,
    batches: options.batches,
    trainImagesPerSecond: (options.batchSize * 1000) / trainMs,
    trainMsPerBatch: trainMs,
    inferImagesPerSecond: (options.batchSize * 1000) / inferMs,
    inferMsPerBatch: inferMs,
    trainCpuMsPerBatch: trainCpuMs,
  };
}

async function printProfile(step: () => Promise<void>, title: string): Promise<void> {
  const profile = await tf.profile(step as unknown as () => void);
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of profile.kernels) {
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const entry = byKernel.get(key) ?? { ms: 0, calls: 0 };
    entry.ms += Number(k.kernelTimeMs);
    entry.calls += 1;
    byKernel.set(key, entry);
  }
  const total = profile.kernels.reduce((s, k) => s + Number(k.kernelTimeMs), 0);
  console.log(`${title}: ${total.toFixed(0)} ms in kernels`);
  for (const [key, { ms, calls }] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) {
    console.log(`  ${ms.toFixed(1).padStart(8)} ms ${String(calls).padStart(3)}x ${key}`);
  }
}

/** `--wasm-tuning` as settings of lib/runtime/wasm_kernels.ts, or undefined when absent. */
function parseTuning(value: string | undefined): Partial<WasmKernelTuning> | undefined {
  if (value === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error(`--wasm-tuning must be a JSON object, got '${value}'`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`--wasm-tuning must be a JSON object, got '${value}'`);
  }
  return parsed as Partial<WasmKernelTuning>;
}

function table(results: BenchResult[]): string {
  const header = [
    "backend",
    "threads",
    "model",
    "batch",
    "train img/s",
    "ms/step",
    "cpu ms/step",
    "infer img/s",
    "ms/batch",
  ];
  const rows = results.map((r) => [
    r.backend,
    String(r.threads),
    r.model,
    String(r.batchSize),
    r.trainImagesPerSecond.toFixed(1),
    r.trainMsPerBatch.toFixed(0),
    r.trainCpuMsPerBatch.toFixed(0),
    r.inferImagesPerSecond.toFixed(1),
    r.inferMsPerBatch.toFixed(0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd())
    .join("\n");
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      backends: { type: "string" },
      models: { type: "string" },
      batches: { type: "string" },
      warmup: { type: "string" },
      "batch-size": { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      pytorch: { type: "string", default: "auto" },
      python: { type: "string" },
      "wasm-tuning": { type: "string" },
      "compare-native-kernels": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return;
  }
  const backends = (values.backends ?? "auto").split(",").map((b) => parseBackendName(b));
  const models = (values.models ?? DEFAULT_MODELS.join(",")).split(",").map((m) => m.trim());
  for (const m of models) modelInfo(m); // throws on an unknown kind
  if (!models.includes("cnn-regressor")) models.unshift("cnn-regressor");
  const threads = values.threads === undefined
    ? undefined
    : parseThreads(values.threads, "--threads");
  const batches = positiveInt(values.batches, "batches", DEFAULT_BATCHES);
  const warmup = positiveInt(values.warmup, "warmup", DEFAULT_WARMUP);
  const batchSize = positiveInt(values["batch-size"], "batch-size", BATCH_SIZE);
  if (batches < 1 || batchSize < 1) throw new Error("--batches and --batch-size must be >= 1");
  const tuning = parseTuning(values["wasm-tuning"]);

  const results: BenchResult[] = [];
  const notes: string[] = [];
  for (const requested of backends) {
    const info = await initBackend(requested, { threads });
    notes.push(...info.notes.map((n) => `${info.name}: ${n}`));
    const cpu = info.name === "cpu";
    const settings = {
      batchSize: cpu && values["batch-size"] === undefined ? CPU_BATCH_SIZE : batchSize,
      batches: cpu && values.batches === undefined ? 1 : batches,
      warmup: cpu && values.warmup === undefined ? 0 : warmup,
      profile: values.profile,
    };
    if (cpu) {
      console.log(
        `cpu backend: ${settings.batches} batch(es) of ${settings.batchSize}, no warm-up ` +
          "(about 80 s per training batch of 8)",
      );
    }
    for (const kind of models) {
      const result = await measure(info, kind, settings);
      results.push(result);
      console.log(
        `${info.name} ${kind}: train ${result.trainImagesPerSecond.toFixed(1)} img/s, ` +
          `infer ${result.inferImagesPerSecond.toFixed(1)} img/s`,
      );
      if (values["compare-native-kernels"] && info.name === "tensorflow") {
        // The same model once more with digitsum's kernel library switched off (TensorFlow's
        // own MaxPoolGrad and TorchAdam's thirteen ops): its speed-up, measured in this run.
        if (!info.kernels.includes(NATIVE_TORCH_ADAM)) {
          notes.push("tensorflow: digitsum's kernel library is not loaded: nothing to compare");
        } else {
          setNativeKernelLibraryEnabled(false);
          let plain: BenchResult;
          try {
            plain = await measure(info, kind, settings);
          } finally {
            setNativeKernelLibraryEnabled(true);
          }
          plain.backend = "tensorflow (TF ops)";
          results.push(plain);
          console.log(
            `${plain.backend} ${kind}: train ${plain.trainImagesPerSecond.toFixed(1)} img/s; ` +
              `with digitsum's kernels training is ` +
              `${(result.trainImagesPerSecond / plain.trainImagesPerSecond).toFixed(2)}x as fast`,
          );
        }
      }
      if (tuning && info.name === "wasm") {
        const previous = setWasmKernelTuning(tuning);
        let tuned: BenchResult;
        try {
          tuned = await measure(info, kind, settings);
        } finally {
          setWasmKernelTuning(previous);
        }
        tuned.model = `${kind} ${JSON.stringify(tuning)}`;
        results.push(tuned);
        console.log(
          `${info.name} ${tuned.model}: train ${tuned.trainImagesPerSecond.toFixed(1)} img/s; ` +
            `default settings train ` +
            `${(result.trainImagesPerSecond / tuned.trainImagesPerSecond).toFixed(2)}x as fast`,
        );
      }
    }
  }
  const torch = values.pytorch === "no" ? undefined : await pytorchReference(models, {
    batchSize,
    batches,
    warmup,
    required: values.pytorch === "yes",
    python: values.python,
  });
  if (torch) results.push(...torch.results);
  else if (values.pytorch !== "no") notes.push(PYTORCH_MISSING);
  console.log("");
  console.log(table(results));
  if (torch) {
    for (const ref of torch.results) {
      for (const ours of results.filter((r) => r.model === ref.model && r !== ref)) {
        if (ours.backend.startsWith("pytorch")) continue;
        console.log(
          `${ref.model}, ${ours.backend} (${ours.threads} threads) vs PyTorch ${torch.version} ` +
            `(${ref.threads} threads), same run: ` +
            `train ${(ours.trainImagesPerSecond / ref.trainImagesPerSecond).toFixed(2)}x, ` +
            `infer ${(ours.inferImagesPerSecond / ref.inferImagesPerSecond).toFixed(2)}x`,
        );
      }
    }
  }
  for (const note of notes) console.log(`note: ${note}`);
  if (values.json) {
    const cpus = os.cpus();
    console.log(JSON.stringify({
      machine: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? "unknown", os: Deno.build.os },
      versions: { deno: Deno.version.deno, tfjs: tf.version.tfjs },
      results,
    }));
  }
  const first = results.find((r) => r.model === "cnn-regressor")!;
  console.log(
    `train_img_s=${first.trainImagesPerSecond.toFixed(1)} infer_img_s=${
      first.inferImagesPerSecond.toFixed(1)
    }`,
  );
}

const PYTORCH_MISSING = "PyTorch reference skipped: no python3 with torch found (pass " +
  "--python PATH or set DIGITSUM_PYTHON, e.g. a venv with `pip install torch==2.13.0+cpu`; " +
  "--pytorch=no silences this)";

/** Environment variable naming the Python interpreter that runs the PyTorch reference. */
export const PYTHON_ENV = "DIGITSUM_PYTHON";

/** The first interpreter that imports torch: `--python`, `$DIGITSUM_PYTHON`, python3, Debian's. */
async function findTorchPython(explicit?: string): Promise<string | undefined> {
  const env = Deno.env.get(PYTHON_ENV);
  const candidates = explicit ? [explicit] : env ? [env] : ["python3", "/usr/bin/python3"];
  for (const python of candidates) {
    try {
      const out = await new Deno.Command(python, {
        args: ["-c", "import torch"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.success) return python;
    } catch {
      // not there
    }
    if (explicit || env) throw new Error(`${python} cannot import torch`);
  }
  return undefined;
}

/**
 * Times the same networks in PyTorch (bench/pytorch_reference.py, every core) in this run, so
 * speed ratios come from one run on one machine state.
 */
async function pytorchReference(
  models: string[],
  options: {
    batchSize: number;
    batches: number;
    warmup: number;
    required: boolean;
    python?: string;
  },
): Promise<{ version: string; results: BenchResult[] } | undefined> {
  const script = new URL("./pytorch_reference.py", import.meta.url).pathname;
  const kinds = models.filter((m) => m === "cnn-regressor" || m === "cnn-classifier");
  let output;
  try {
    const python = await findTorchPython(options.python);
    if (!python) {
      if (options.required) throw new Error("no python3 with torch found");
      return undefined;
    }
    output = await new Deno.Command(python, {
      args: [
        script,
        "--json",
        `--threads=${Math.max(1, os.cpus().length)}`,
        `--batches=${options.batches}`,
        `--warmup=${options.warmup}`,
        `--batch-size=${options.batchSize}`,
        `--models=${kinds.join(",")}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (options.required || options.python) {
      throw new Error(
        `PyTorch reference failed: ${error instanceof Error ? error.message : error}`,
      );
    }
    return undefined;
  }
  const text = new TextDecoder().decode(output.stdout);
  const json = text.split("\n").find((line) => line.startsWith("{"));
  if (!output.success || !json) {
    if (options.required) {
      throw new Error(
        `PyTorch reference failed: ${new TextDecoder().decode(output.stderr).trim()}`,
      );
    }
    return undefined;
  }
  const parsed = JSON.parse(json) as { versions: { torch: string }; results: BenchResult[] };
  for (const r of parsed.results) {
    console.log(
      `pytorch ${r.model}: train ${r.trainImagesPerSecond.toFixed(1)} img/s, ` +
        `infer ${r.inferImagesPerSecond.toFixed(1)} img/s`,
    );
  }
  for (const r of parsed.results) r.backend = `pytorch ${parsed.versions.torch}`;
  return { version: parsed.versions.torch, results: parsed.results };
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    console.error(usage());
    Deno.exit(1);
  }
}
