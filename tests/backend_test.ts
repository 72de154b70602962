/** Tests of lib/runtime/backend.ts: names, idempotence, switching, env, logging and the threaded wasm. */

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import {
  BACKEND_ENV,
  BACKEND_NAMES,
  type BackendInfo,
  currentBackend,
  defaultWasmThreads,
  describe,
  initBackend,
  parseBackendName,
  parseThreads,
  THREADS_ENV,
} from "../lib/runtime/backend.ts";
import { NAPI_BUILD_VERSION } from "../lib/runtime/native_install.ts";

/** Whether `deno task install-native` has built the native addon in this checkout. */
function nativeInstalled(): boolean {
  const require = createRequire(import.meta.url);
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      const dir = dirname(require.resolve(`${pkg}/package.json`));
      if (Deno.statSync(join(dir, "lib", `napi-v${NAPI_BUILD_VERSION}`, "tfjs_binding.node"))) {
        return true;
      }
    } catch {
      // not installed
    }
  }
  return false;
}

Deno.test("parseBackendName() accepts every name in any case", () => {
  for (const name of BACKEND_NAMES) {
    assert.equal(parseBackendName(name), name);
    assert.equal(parseBackendName(` ${name.toUpperCase()} `), name);
  }
});

Deno.test("parseBackendName() rejects an unknown name and lists the valid ones", () => {
  assert.throws(
    () => parseBackendName("tpu"),
    /Unknown backend 'tpu': expected one of auto, tensorflow, webgpu, wasm, cpu/,
  );
});

Deno.test("parseThreads() accepts positive integers and rejects the rest", () => {
  assert.equal(parseThreads("2"), 2);
  assert.equal(parseThreads(1), 1);
  for (const bad of ["0", "-1", "1.5", "two", "", "65"]) {
    assert.throws(() => parseThreads(bad, THREADS_ENV), new RegExp(`Invalid ${THREADS_ENV}`));
  }
});

Deno.test("defaultWasmThreads() uses the cores unless the machine is busy", () => {
  const cores = navigator.hardwareConcurrency;
  const { threads, note } = defaultWasmThreads();
  assert.ok(threads >= 1 && threads <= Math.min(Math.max(cores, 1), 4), `threads ${threads}`);
  if (note) {
    assert.equal(threads, 1);
    assert.match(note, /machine busy .*DIGITSUM_THREADS/);
  } else if (cores >= 2) {
    assert.equal(threads, Math.min(cores, 4));
  }
});

Deno.test("initBackend() is idempotent and switches when another backend is named", async () => {
  const lines: string[] = [];
  const cpu = await initBackend("cpu", { log: (line) => lines.push(line) });
  assert.equal(cpu.name, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.deepEqual(lines, ["Backend: cpu (pure JS, very slow for training)"]);
  assert.equal(await initBackend("cpu", { log: (line) => lines.push(line) }), cpu);
  assert.equal(await initBackend("auto", { quiet: true }), cpu);
  assert.equal(lines.length, 1, "a repeated call prints nothing");

  const wasm = await initBackend("wasm", { quiet: true, threads: 1 });
  assert.equal(wasm.name, "wasm");
  assert.equal(wasm.threads, 1);
  assert.equal(tf.getBackend(), "wasm");
  assert.ok(wasm.kernels.includes("Conv2DBackpropFilter"), wasm.kernels.join());
  assert.equal(wasm.versions["tfjs-backend-wasm"], "4.22.0");
  assert.equal(currentBackend(), wasm);
  assert.equal(describe(wasm), "Backend: wasm (1 thread, digitsum training kernels)");
  // The wasm backend trains a conv layer (Conv2DBackpropFilter exists).
  const grad = tf.tidy(() =>
    tf.grad((w: tf.Tensor) =>
      tf.sum(tf.conv2d(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, w as tf.Tensor4D, 1, "same"))
    )(tf.ones([3, 3, 1, 1])).dataSync()
  );
  assert.deepEqual(Array.from(grad), [9, 12, 9, 12, 16, 12, 9, 12, 9]);
});

Deno.test("initBackend() reads the backend from DIGITSUM_BACKEND", async () => {
  const before = Deno.env.get(BACKEND_ENV);
  try {
    Deno.env.set(BACKEND_ENV, "cpu");
    assert.equal((await initBackend(undefined, { quiet: true })).name, "cpu");
    Deno.env.set(BACKEND_ENV, "nonsense");
    await assert.rejects(initBackend(undefined, { quiet: true }), /Unknown backend 'nonsense'/);
  } finally {
    if (before === undefined) Deno.env.delete(BACKEND_ENV);
    else Deno.env.set(BACKEND_ENV, before);
  }
});

const hasNative = nativeInstalled();

Deno.test({
  name: "initBackend('tensorflow') explains how to install the native backend",
  ignore: hasNative, // installed here: there is nothing to explain
}, async () => {
  await assert.rejects(
    initBackend("tensorflow", { quiet: true }),
    /Native TensorFlow backend not installed \(run `deno task install-native`/,
  );
});

Deno.test({
  name: "initBackend('auto') without the native backend notes it once and picks wasm",
  ignore: hasNative,
}, async () => {
  // A fresh process: `auto` in this one would return the backend chosen above.
  const script = `
    import { initBackend } from ${
    JSON.stringify(new URL("../lib/runtime/backend.ts", import.meta.url).href)
  };
    const info = await initBackend("auto", { threads: 1 });
    console.log(JSON.stringify(info));`;
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", new URL("../deno.json", import.meta.url).pathname, script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(code, 0);
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[0], /^Note: Native TensorFlow backend not installed .*install-native/);
  assert.equal(lines[1], "Backend: wasm (1 thread, digitsum training kernels)");
  const info = JSON.parse(lines[2]);
  assert.equal(info.name, "wasm");
  assert.equal(info.notes.length, 1);
});

Deno.test("threaded wasm gives the same training result and lets the process exit", async () => {
  // Two fresh processes, 1 and 2 threads; neither calls Deno.exit.
  const script = (threads: number) => `
    import * as tf from "@tensorflow/tfjs";
    import { initBackend } from ${
    JSON.stringify(new URL("../lib/runtime/backend.ts", import.meta.url).href)
  };
    const info = await initBackend("wasm", { threads: ${threads}, quiet: true });
    const x = tf.randomUniform([8, 12, 20, 1], 0, 1, "float32", 7);
    const w = tf.variable(tf.randomNormal([3, 3, 1, 16], 0, 0.1, "float32", 8));
    const v = tf.variable(tf.randomNormal([960, 1], 0, 0.1, "float32", 9));
    const opt = tf.train.adam(1e-2);
    let loss = 0;
    for (let i = 0; i < 3; i++) {
      loss = opt.minimize(() => {
        const h = tf.maxPool(tf.relu(tf.conv2d(x, w, 1, "same")), 2, 2, "valid");
        return tf.mean(tf.square(tf.matMul(tf.reshape(h, [8, 960]), v)));
      }, true).dataSync()[0];
    }
    console.log(JSON.stringify({ threads: info.threads, loss, w: Array.from(w.dataSync()) }));`;
  const run = async (threads: number) => {
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        script(threads),
      ],
      stdout: "piped",
      stderr: "inherit",
      signal: AbortSignal.timeout(60_000),
    }).output();
    assert.equal(code, 0, `the ${threads}-thread process failed or did not exit`);
    return JSON.parse(new TextDecoder().decode(stdout));
  };
  const one = await run(1);
  const two = await run(2);
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2);
  assert.ok(Number.isFinite(one.loss));
  assert.equal(two.loss, one.loss);
  assert.deepEqual(two.w, one.w);
});

Deno.test("describe() says whether the native backend runs digitsum's C++ kernels", () => {
  const info: BackendInfo = {
    name: "tensorflow",
    threads: 2,
    kernels: ["DigitsumReluGrad"],
    versions: { libtensorflow: "2.21.0", "native-package": "@tensorflow/tfjs-node" },
    notes: [],
  };
  assert.equal(
    describe(info),
    "Backend: tensorflow (2 threads, digitsum training kernels, native TensorFlow 2.21.0 via " +
      "@tensorflow/tfjs-node)",
  );
  info.kernels.push("DigitsumMaxPool2x2Grad", "DigitsumTorchAdam");
  assert.equal(
    describe(info),
    "Backend: tensorflow (2 threads, digitsum training kernels in C++, native TensorFlow 2.21.0 " +
      "via @tensorflow/tfjs-node)",
  );
});
