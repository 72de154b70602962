/**
 * The native TensorFlow backend: the installer's pieces (symbol list, wheel names, staging that
 * leaves nothing behind) always; the backend itself where `deno task install-native` has run
 * (required in CI, which runs it before the tests): its training kernels against the `cpu`
 * backend, and what the thread count does to a training run.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/runtime/backend.ts";
import {
  addonKey,
  cApiLibraryName,
  NAPI_BUILD_VERSION,
  requiredCApiSymbols,
  stageLibrary,
  wheelVersion,
} from "../lib/runtime/native_install.ts";

const root = new URL("../", import.meta.url).pathname;
const packageDir = join(root, "node_modules", "@tensorflow", "tfjs-node");
const hasNative = (() => {
  try {
    return Deno.statSync(
      join(packageDir, "lib", `napi-v${NAPI_BUILD_VERSION}`, "tfjs_binding.node"),
    )
      .isFile;
  } catch {
    return false;
  }
})();
const inCi = Deno.env.get("CI") === "true";
if (!hasNative && !inCi) {
  console.log("skipping the native backend tests: not installed (deno task install-native)");
}
const nativeTest = { ignore: !hasNative && !inCi };

Deno.test("requiredCApiSymbols() keeps the exported C functions the binding calls", () => {
  const binding = [
    "TF_AutoStatus status; TFE_Op* op = TFE_NewOp(ctx, name, status.status);",
    "TF_TString_Init(&s); int64_t d = TF_Dim(t, 0); TF_Version ();",
  ];
  const headers = [
    "TF_CAPI_EXPORT extern TFE_Op* TFE_NewOp(TFE_Context* ctx, const char* op_or_function_name,",
    "TF_CAPI_EXPORT extern int64_t TF_Dim(const TF_Tensor* tensor, int dim_index);",
    "TF_CAPI_EXPORT extern const char* TF_Version(void);",
    "static inline void TF_TString_Init(TF_TString *str) {",
    "TF_CAPI_EXPORT extern void TF_DeleteStatus(TF_Status*);", // declared, never called
  ];
  assert.deepEqual(requiredCApiSymbols(binding, headers), ["TFE_NewOp", "TF_Dim", "TF_Version"]);
});

Deno.test("requiredCApiSymbols() finds the binding's calls in tfjs-node's real sources", () => {
  const read = (dir: string) =>
    [...Deno.readDirSync(dir)].filter((e) => e.isFile && /\.(cc|h)$/.test(e.name))
      .map((e) => Deno.readTextFileSync(join(dir, e.name)));
  const sources = read(join(packageDir, "binding"));
  // Headers as TensorFlow declares them: one exported declaration per called name.
  const called = new Set(sources.join("\n").match(/\bTFE?_[A-Z][A-Za-z0-9_]*(?=\s*\()/g));
  const headers = [...called].map((name) => `TF_CAPI_EXPORT extern void ${name}(void);`);
  const symbols = requiredCApiSymbols(sources, headers);
  for (const name of ["TFE_Execute", "TFE_NewContext", "TF_Version", "TF_NewTensor"]) {
    assert.ok(symbols.includes(name), `${name} missing from ${symbols.length} symbols`);
  }
});

Deno.test("wheelVersion() reads TensorFlow wheel names and rejects others", () => {
  assert.equal(
    wheelVersion("/x/tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl"),
    "2.21.0",
  );
  assert.equal(wheelVersion("tensorflow-2.16.1-cp312-cp312-manylinux_2_17_x86_64.whl"), "2.16.1");
  assert.throws(() => wheelVersion("/x/numpy-2.0.0-cp311-none.whl"), /not a TensorFlow wheel/);
});

Deno.test("addonKey() names the package, library, N-API version and machine", () => {
  const key = addonKey("@tensorflow/tfjs-node", { dir: "/c", version: "2.21.0", variant: "cpu" });
  assert.equal(
    key,
    `tfjs-node-4.22.0_tf-2.21.0-cpu_napi-${NAPI_BUILD_VERSION}_${Deno.build.os}-${Deno.build.arch}`,
  );
});

Deno.test("cApiLibraryName() explains a folder without the TensorFlow C library", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.throws(() => cApiLibraryName(dir), /Cannot find the TensorFlow C library in .*\.so\.2/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stageLibrary() rejects a wheel without the C library and leaves nothing behind", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const wheel = join(cache, "tensorflow_cpu-9.9.9-cp311-cp311-manylinux_2_27_x86_64.whl");
    // A real zip holding only a header, made by Python's zipfile (as pip's wheels are).
    const made = await new Deno.Command("python3", {
      args: [
        "-c",
        "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); " +
        "z.writestr('tensorflow/include/tensorflow/c/c_api.h', '// header'); z.close()",
        wheel,
      ],
    }).output();
    assert.ok(made.success, "python3 could not write the zip");
    await assert.rejects(
      stageLibrary(wheel, { cacheDir: cache, packageDir, gpu: false, log: () => {} }),
      /no tensorflow\/libtensorflow_cc\.so\.2, tensorflow\/libtensorflow_framework\.so\.2 in the wheel/,
    );
    const left = [...Deno.readDirSync(join(cache, "native", "libtensorflow"))].map((e) => e.name);
    assert.deepEqual(left, [], `staging left ${left.join(", ")}`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("stageLibrary() rejects a file that is no wheel, tarball or folder", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const path = join(cache, "libtensorflow.zip");
    await Deno.writeTextFile(path, "not a library");
    await assert.rejects(
      stageLibrary(path, { cacheDir: cache, packageDir, gpu: false, log: () => {} }),
      new RegExp(`Cannot use ${path}: expected a TensorFlow wheel`),
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test({
  name: "the native Relu gradient equals the cpu backend's",
  ...nativeTest,
  async fn() {
    const info = await initBackend("tensorflow", { quiet: true });
    assert.ok(info.kernels.includes("DigitsumReluGrad"), `kernels: ${info.kernels}`);
    const shape = [4, 10, 12, 8];
    const n = shape.reduce((a, b) => a * b);
    // Values on both sides of 0, exact zeros included (ReLU's gradient there is 0 in both).
    const x = Float32Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 0 : Math.sin(i * 1.3)));
    const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7));
    const gradient = async (backend: string) => {
      await tf.setBackend(backend);
      const g = tf.grad((t: tf.Tensor) => tf.relu(t).mul(tf.tensor(dy, shape)).sum());
      return await g(tf.tensor(x, shape)).data();
    };
    const native = await gradient("tensorflow");
    const reference = await gradient("cpu");
    await tf.setBackend("tensorflow");
    assert.deepEqual([...native], [...reference]);
  },
});

Deno.test({
  name: "the study CNN on the native backend: 1 and 2 threads agree to 1e-5, same threads exactly",
  ...nativeTest,
  async fn() {
    const script = join(dirname(new URL(import.meta.url).pathname), "fixtures", "native_steps.ts");
    const run = async (threads: number) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--config", join(root, "deno.json"), script],
        env: { DIGITSUM_THREADS: String(threads) },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout)) as { threads: number; w: number[] };
    };
    const one = await run(1);
    const two = await run(2);
    const twoAgain = await run(2);
    assert.equal(one.threads, 1);
    assert.equal(two.threads, 2);
    assert.deepEqual(twoAgain.w, two.w, "the same thread count must give the same weights");
    const worst = one.w.reduce((m, v, i) => Math.max(m, Math.abs(v - two.w[i])), 0);
    assert.ok(worst < 1e-5, `1 vs 2 threads differ by ${worst}`);
  },
});
