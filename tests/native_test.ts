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
import {
  loadNativeKernelLibrary,
  NATIVE_BIAS_ADD_RELU,
  NATIVE_MAX_POOL_GRAD,
  NATIVE_TORCH_ADAM,
  nativeTorchAdam,
  setNativeKernelLibraryEnabled,
} from "../lib/runtime/native_kernels.ts";

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

Deno.test({
  name: "install-native built digitsum's kernel library and the backend loaded it",
  ...nativeTest,
  async fn() {
    const info = await initBackend("tensorflow", { quiet: true });
    const record = JSON.parse(
      Deno.readTextFileSync(join(packageDir, "lib", "digitsum-native.json")),
    ) as { kernels?: string };
    assert.ok(record.kernels && Deno.statSync(record.kernels).isFile, JSON.stringify(record));
    assert.ok(info.kernels.includes(NATIVE_MAX_POOL_GRAD), `kernels: ${info.kernels}`);
    assert.ok(info.kernels.includes(NATIVE_TORCH_ADAM), `kernels: ${info.kernels}`);
    assert.ok(info.kernels.includes(NATIVE_BIAS_ADD_RELU), `kernels: ${info.kernels}`);
  },
});

/** Asserts two float arrays hold the same bits (Object.is: -0 and +0 differ), naming the first. */
function assertSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string) {
  assert.equal(actual.length, expected.length, `${what}: lengths`);
  let differing = 0;
  let first = -1;
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      differing++;
      if (first < 0) first = i;
    }
  }
  assert.equal(
    differing,
    0,
    `${what}: ${differing} of ${actual.length} values differ, first at ${first} ` +
      `(${actual[first]} against ${expected[first]})`,
  );
}

/** Pool inputs with the ties real activations have: zeros (after ReLU) and repeated values. */
function tiedPoolInput(shape: number[], seed: number): tf.Tensor4D {
  return tf.tidy(() => {
    const normal = tf.randomNormal(shape, 0, 1, "float32", seed);
    // Half ReLU'd (ties at 0), half rounded to halves (ties at positive and negative values).
    const relu = tf.relu(normal);
    const rounded = tf.round(normal.mul(2)).div(2);
    const mask = tf.randomUniform(shape, 0, 1, "float32", seed + 1).less(0.5);
    return tf.where(mask, relu, rounded) as tf.Tensor4D;
  });
}

Deno.test({
  name: "digitsum's native max-pool gradient equals TensorFlow's MaxPoolGrad and the cpu backend's",
  ...nativeTest,
  async fn() {
    await initBackend("tensorflow", { quiet: true });
    for (const shape of [[3, 8, 12, 5], [2, 40, 168, 32]]) {
      const x = tiedPoolInput(shape, 5);
      const y = tf.maxPool(x, 2, 2, "valid");
      const dy = tf.randomNormal(y.shape, 0, 1, "float32", 9);
      const attrs = { filterSize: 2, strides: 2, pad: "valid" };
      // TensorFlow's own op, called directly (not through the gradient digitsum registers).
      const tensorflow = tf.engine().runKernel("MaxPoolGrad", { dy, input: x, output: y }, attrs);
      const gradient = async () => {
        const g = tf.grad((t: tf.Tensor) =>
          tf.maxPool(t as tf.Tensor4D, 2, 2, "valid").mul(dy).sum()
        );
        return await g(x).data();
      };
      const ours = await gradient();
      const expected = await (tensorflow as tf.Tensor).data();
      assertSameBits(ours, expected, `shape [${shape}]`);
      // The profile shows the op ran (a fallback to TensorFlow's op would also match).
      const profile = await tf.profile(() => gradient());
      assert.ok(profile.kernels.some((k) => k.name === NATIVE_MAX_POOL_GRAD), "not used");
      if (shape[1] < 20) {
        const values = { x: await x.data(), dy: await dy.data() };
        await tf.setBackend("cpu");
        const cx = tf.tensor4d(values.x, shape as [number, number, number, number]);
        const cdy = tf.tensor(values.dy, y.shape);
        const g = tf.grad((t: tf.Tensor) =>
          tf.maxPool(t as tf.Tensor4D, 2, 2, "valid").mul(cdy).sum()
        );
        const reference = await g(cx).data();
        await tf.setBackend("tensorflow");
        assertSameBits(ours, reference, `shape [${shape}] against cpu`);
      }
      tf.dispose([x, y, dy, tensorflow as tf.Tensor]);
    }
  },
});

Deno.test({
  name: "nativeTorchAdam() equals TorchAdam's op-by-op update bit for bit, with 1 or 2 threads",
  ...nativeTest,
  async fn() {
    await initBackend("tensorflow", { quiet: true });
    const shape = [700, 300]; // above the size one thread handles alone
    const [beta1, beta2, eps, lr] = [0.9, 0.999, 1e-8, 1e-3];
    const run = (threads: number) => {
      assert.equal(loadNativeKernelLibrary(packageDir, threads), undefined);
      let fused = [tf.randomNormal(shape, 0, 0.05, "float32", 1), tf.zeros(shape), tf.zeros(shape)];
      let ops = fused.map((t) => t.clone());
      for (let step = 1; step <= 5; step++) {
        // Large, tiny and zero gradients: Adam divides by their running size.
        const scale = [1e-2, 1e-7, 0, 3, 1e-4][step - 1];
        const g = tf.randomNormal(shape, 0, scale, "float32", 20 + step);
        const stepSize = lr / (1 - Math.pow(beta1, step));
        const sqrtBc2 = Math.sqrt(1 - Math.pow(beta2, step));
        const [p, m, v] = nativeTorchAdam(fused[0], g, fused[1], fused[2], [
          beta1,
          1 - beta1,
          beta2,
          1 - beta2,
          sqrtBc2,
          eps,
          stepSize,
        ]);
        const next = tf.tidy(() => {
          // TorchAdam's tensor ops (lib/training/train.ts), as every other backend runs them.
          const m2 = ops[1].mul(beta1).add(g.mul(1 - beta1));
          const v2 = ops[2].mul(beta2).add(g.square().mul(1 - beta2));
          const p2 = ops[0].sub(m2.div(v2.sqrt().div(sqrtBc2).add(eps)).mul(stepSize));
          return [p2, m2, v2];
        });
        tf.dispose([...fused, ...ops, g]);
        fused = [p, m, v];
        ops = next;
      }
      const values = fused.map((t) => t.dataSync());
      fused.forEach((t, i) => assertSameBits(t.dataSync(), ops[i].dataSync(), `output ${i}`));
      tf.dispose([...fused, ...ops]);
      return values;
    };
    const one = run(1);
    const two = run(2);
    one.forEach((values, i) => assertSameBits(values, two[i], `output ${i}, 1 vs 2 threads`));
    loadNativeKernelLibrary(packageDir, 2);
  },
});

Deno.test({
  name:
    "digitsum's native relu(x + bias) equals TensorFlow's Add and Relu, and fused conv layers use it",
  ...nativeTest,
  async fn() {
    await initBackend("tensorflow", { quiet: true });
    // Values around zero (exact zeros, -0, sums that cancel) and NaN pass through as TensorFlow's.
    const x = tf.tensor2d([[0, -0, 1.5, -2], [Number.NaN, 3, -0, 0.25], [-1, 1, 2, -0.5]]);
    const bias = tf.tensor1d([-0, -0, -1.5, 2]);
    const ours = await (tf.engine().runKernel(NATIVE_BIAS_ADD_RELU, { x, bias }) as tf.Tensor)
      .data();
    const tensorflow = await tf.relu(tf.add(x, bias)).data();
    assertSameBits(ours, tensorflow, "relu(x + bias)");
    // A conv layer's inference: the same output with the library switched off and on, and the
    // op in the profile when on.
    const input = tiedPoolInput([4, 40, 168, 1], 11);
    const filter = tf.randomNormal([3, 3, 1, 32], 0, 0.3, "float32", 12) as tf.Tensor4D;
    const b = tf.randomNormal([32], 0, 0.1, "float32", 13);
    const conv = async () =>
      await tf.fused.conv2d({
        x: input,
        filter,
        strides: 1,
        pad: "same",
        bias: b,
        activation: "relu",
      })
        .data();
    setNativeKernelLibraryEnabled(false);
    const plain = await conv();
    setNativeKernelLibraryEnabled(true);
    assertSameBits(await conv(), plain, "fused conv2d");
    const profile = await tf.profile(() => conv());
    assert.ok(profile.kernels.some((k) => k.name === NATIVE_BIAS_ADD_RELU), "not used");
    tf.dispose([x, bias, input, filter, b]);
  },
});
