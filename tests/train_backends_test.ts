/**
 * The train loop on every backend it supports: the same small conv net, data and weights trained
 * in a fresh process per backend (tests/fixtures/train_on_backend.ts) must give the reference
 * `cpu` backend's numbers. webgpu runs where a WebGPU adapter exists (on Linux a Vulkan driver:
 * CI installs Debian's mesa-vulkan-drivers, a software adapter); tensorflow where
 * `deno task install-native` has run (required in CI, which runs it first).
 */
import assert from "node:assert/strict";
import { NAPI_BUILD_VERSION } from "../lib/runtime/native_install.ts";

/** Whether WebGPU has an adapter here (asked in a child process: this one never opens a GPU). */
async function webgpuAvailable(): Promise<boolean> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "console.log((await navigator.gpu?.requestAdapter()) != null)"],
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return new TextDecoder().decode(stdout).trim() === "true";
}
const hasAdapter = await webgpuAvailable();

/** Whether `deno task install-native` has built the native backend here (CI does, first). */
const hasNative = nativeAddonPresent();
/** In CI the native backend must be tested: a missing install fails instead of skipping. */
const inCi = Deno.env.get("CI") === "true";

function nativeAddonPresent(): boolean {
  const dir = new URL("../node_modules/@tensorflow/tfjs-node/lib/", import.meta.url).pathname;
  try {
    return Deno.statSync(`${dir}napi-v${NAPI_BUILD_VERSION}/tfjs_binding.node`).isFile;
  } catch {
    return false;
  }
}

interface Trained {
  backend: string;
  losses: number[];
  valAccuracy: number[];
  predictions: number[];
  weights: number[];
  logSums: number[];
  grad: number[];
}

async function trainOn(backend: string): Promise<Trained> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      new URL("./fixtures/train_on_backend.ts", import.meta.url).pathname,
      backend,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `training on ${backend} failed:\n${err}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

function assertClose(actual: number[], expected: number[], tolerance: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  actual.forEach((a, i) => {
    const e = expected[i];
    assert.ok(
      Math.abs(a - e) <= tolerance * Math.max(1, Math.abs(e)),
      `${what}[${i}]: ${a} vs ${e} (tolerance ${tolerance})`,
    );
  });
}

let reference: Trained | undefined;
async function cpuReference(): Promise<Trained> {
  reference ??= await trainOn("cpu");
  return reference;
}

if (!hasNative && !inCi) {
  console.log("skipping the tensorflow backend: not installed (deno task install-native)");
}

for (const backend of ["wasm", "webgpu", "tensorflow"]) {
  Deno.test({
    name: `trainModel() on ${backend} gives the cpu backend's losses, weights and predictions`,
    ignore: (backend === "webgpu" && !hasAdapter) ||
      (backend === "tensorflow" && !hasNative && !inCi),
    async fn() {
      const expected = await cpuReference();
      const got = await trainOn(backend);
      assert.equal(got.backend, backend);
      assert.equal(got.losses.length, 2);
      assert.ok(got.losses[1] < got.losses[0], `loss did not fall: ${got.losses}`);
      assertClose(got.losses, expected.losses, 1e-4, "losses");
      assertClose(got.weights, expected.weights, 1e-4, "weights");
      assert.deepEqual(got.valAccuracy, expected.valAccuracy);
      assert.deepEqual(got.predictions, expected.predictions);
      // SumNet's sum layer: host loop on wasm/cpu/tensorflow, tensor ops on webgpu; same values.
      assertClose(got.logSums, expected.logSums, 1e-4, "log P(sum)");
      assertClose(got.grad, expected.grad, 1e-3, "d log P(sum) / d cells");
    },
  });
}
