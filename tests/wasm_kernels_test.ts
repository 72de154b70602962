/**
 * Checks every kernel of lib/runtime/wasm_kernels.ts against the pure-JS `cpu` backend on random inputs,
 * the fallbacks included, and a whole small model's gradients between the two backends.
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  registerWasmTrainingKernels,
  setWasmKernelTuning,
  wasmKernelPathCounts,
} from "../lib/runtime/wasm_kernels.ts";

/** Allowed max abs difference, relative to max(1, largest expected magnitude). */
const RELATIVE_TOLERANCE = 1e-4;

type Pad = "same" | "valid" | number | [[number, number], [number, number], [number, number], [
  number,
  number,
]];

interface Input {
  shape: number[];
  values: Float32Array;
}

let ready: Promise<void> | null = null;

function setup(): Promise<void> {
  ready ??= (async () => {
    registerWasmTrainingKernels();
    assert.ok(await tf.setBackend("wasm"), "wasm backend failed to initialise");
    assert.ok(await tf.setBackend("cpu"), "cpu backend failed to initialise");
  })();
  return ready;
}

/** Deterministic uniform(-1, 1) values (mulberry32). */
function randomInput(shape: number[], seed: number, options: { levels?: number } = {}): Input {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const values = new Float32Array(shape.reduce((p, d) => p * d, 1));
  for (let i = 0; i < values.length; i++) {
    // `levels` makes many exact ties (for max-pool tie-breaking).
    values[i] = options.levels ? Math.floor(next() * options.levels) : next() * 2 - 1;
  }
  return { shape, values };
}

/** Runs `kernel` on one backend with fresh tensors and returns its output values. */
function runKernel(
  backend: "wasm" | "cpu",
  kernel: string,
  inputs: Record<string, Input>,
  attrs: Record<string, unknown>,
): { shape: number[]; values: Float32Array } {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const tensors: Record<string, tf.Tensor> = {};
    for (const [name, input] of Object.entries(inputs)) {
      tensors[name] = tf.tensor(input.values, input.shape);
    }
    const out = tf.engine().runKernel(
      kernel,
      tensors as unknown as tf.NamedTensorMap,
      attrs as tf.NamedAttrMap,
    ) as tf.Tensor;
    return { shape: out.shape, values: out.dataSync() as Float32Array };
  });
}

function assertClose(
  actual: { shape: number[]; values: ArrayLike<number> },
  expected: { shape: number[]; values: ArrayLike<number> },
  what: string,
): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  let scale = 1;
  for (let i = 0; i < expected.values.length; i++) {
    scale = Math.max(scale, Math.abs(expected.values[i]));
  }
  let worst = 0, at = -1;
  for (let i = 0; i < expected.values.length; i++) {
    const diff = Math.abs(actual.values[i] - expected.values[i]);
    if (!(diff <= worst)) {
      worst = diff;
      at = i;
    }
  }
  assert.ok(
    worst <= RELATIVE_TOLERANCE * scale,
    `${what}: max abs diff ${worst} at ${at} (${actual.values[at]} vs ${
      expected.values[at]
    }) > ${RELATIVE_TOLERANCE} * ${scale}`,
  );
}

/** Runs a kernel on wasm and cpu, compares, and returns the wasm path counts it caused. */
function checkKernel(
  kernel: string,
  inputs: Record<string, Input>,
  attrs: Record<string, unknown>,
  what: string,
): Record<string, number> {
  wasmKernelPathCounts({ reset: true });
  const actual = runKernel("wasm", kernel, inputs, attrs);
  const paths = wasmKernelPathCounts({ reset: true });
  const expected = runKernel("cpu", kernel, inputs, attrs);
  assertClose(actual, expected, `${kernel} ${what}`);
  return paths;
}

function convOutSize(
  inShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number,
  pad: Pad,
  dataFormat: "NHWC" | "NCHW",
): number[] {
  return tf.backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    strides,
    1,
    pad,
    "floor",
    false,
    dataFormat === "NHWC" ? "channelsLast" : "channelsFirst",
  ).outShape;
}

Deno.test("Conv2DBackpropFilter on wasm matches cpu over shapes, strides and paddings", async () => {
  await setup();
  let seed = 1;
  const seen = new Set<string>();
  for (const batch of [1, 3]) {
    for (const [inC, outC] of [[1, 4], [3, 2], [8, 5]]) {
      for (const f of [1, 3, 5]) {
        for (const strides of [1, 2]) {
          for (const pad of ["same", "valid"] as const) {
            const xShape: [number, number, number, number] = [batch, 9, 11, inC];
            const filterShape: [number, number, number, number] = [f, f, inC, outC];
            const dyShape = convOutSize(xShape, filterShape, strides, pad, "NHWC");
            const paths = checkKernel(
              "Conv2DBackpropFilter",
              {
                x: randomInput(xShape, seed++),
                dy: randomInput(dyShape, seed++),
              },
              { strides, pad, dataFormat: "NHWC", filterShape },
              `b${batch} c${inC}->${outC} f${f} s${strides} ${pad}`,
            );
            for (const key of Object.keys(paths)) seen.add(key);
          }
        }
      }
    }
  }
  assert.ok(seen.has("Conv2DBackpropFilter:fast"), [...seen].join());
  assert.ok(seen.has("Conv2DBackpropFilter:im2col"), [...seen].join());
});

Deno.test("Conv2DBackpropFilter on wasm handles batch groups, explicit pads, NCHW and rounding", async () => {
  await setup();
  // More images than one XNNPACK call takes: several groups summed.
  let paths = checkKernel(
    "Conv2DBackpropFilter",
    {
      x: randomInput([37, 6, 7, 4], 11),
      dy: randomInput([37, 6, 7, 3], 12),
    },
    { strides: 1, pad: "same", dataFormat: "NHWC", filterShape: [3, 3, 4, 3] },
    "37 images",
  );
  assert.deepEqual(Object.keys(paths), ["Conv2DBackpropFilter:fast"]);
  // Explicit, asymmetric padding.
  const explicit: Pad = [[0, 0], [2, 0], [1, 3], [0, 0]];
  paths = checkKernel(
    "Conv2DBackpropFilter",
    {
      x: randomInput([2, 8, 9, 5], 13),
      dy: randomInput(convOutSize([2, 8, 9, 5], [3, 3, 5, 4], 2, explicit, "NHWC"), 14),
    },
    { strides: 2, pad: explicit, dataFormat: "NHWC", filterShape: [3, 3, 5, 4] },
    "explicit",
  );
  assert.deepEqual(Object.keys(paths), ["Conv2DBackpropFilter:fast"]);
  // NCHW goes to the direct loop.
  paths = checkKernel(
    "Conv2DBackpropFilter",
    {
      x: randomInput([2, 3, 7, 8], 15),
      dy: randomInput(convOutSize([2, 3, 7, 8], [3, 3, 3, 4], 1, "same", "NCHW"), 16),
    },
    { strides: 1, pad: "same", dataFormat: "NCHW", filterShape: [3, 3, 3, 4] },
    "NCHW",
  );
  assert.deepEqual(Object.keys(paths), ["Conv2DBackpropFilter:loop"]);
  // A numeric pad with a rounding mode.
  const xShape: [number, number, number, number] = [2, 10, 9, 6];
  const dyShape = tf.backend_util.computeConv2DInfo(xShape, [4, 4, 6, 3], 3, 1, 1, "ceil")
    .outShape;
  paths = checkKernel("Conv2DBackpropFilter", {
    x: randomInput(xShape, 17),
    dy: randomInput(dyShape, 18),
  }, {
    strides: 3,
    pad: 1,
    dimRoundingMode: "ceil",
    dataFormat: "NHWC",
    filterShape: [4, 4, 6, 3],
  }, "numeric pad, ceil");
  assert.deepEqual(Object.keys(paths), ["Conv2DBackpropFilter:fast"]);
});

Deno.test("Conv2DBackpropInput on wasm matches cpu, fast path and fallbacks", async () => {
  await setup();
  let seed = 100;
  const seen = new Set<string>();
  for (const batch of [1, 3]) {
    for (const [inC, outC] of [[1, 4], [3, 2], [8, 5]]) {
      for (const f of [1, 3, 5]) {
        for (const strides of [1, 2]) {
          for (const pad of ["same", "valid"] as const) {
            const inputShape: [number, number, number, number] = [batch, 9, 11, inC];
            const filterShape: [number, number, number, number] = [f, f, inC, outC];
            const dyShape = convOutSize(inputShape, filterShape, strides, pad, "NHWC");
            const paths = checkKernel(
              "Conv2DBackpropInput",
              {
                dy: randomInput(dyShape, seed++),
                filter: randomInput(filterShape, seed++),
              },
              { strides, pad, dataFormat: "NHWC", inputShape },
              `b${batch} c${inC}->${outC} f${f} s${strides} ${pad}`,
            );
            // matmul: strides, or dx with at least twice the positions of dy (9 x 11 -> 5 x 7)
            const expectPath = strides === 1 && !(f === 5 && pad === "valid")
              ? "Conv2DBackpropInput:fast"
              : "Conv2DBackpropInput:matmul";
            assert.deepEqual(Object.keys(paths), [expectPath]);
            for (const key of Object.keys(paths)) seen.add(key);
          }
        }
      }
    }
  }
  assert.deepEqual([...seen].sort(), ["Conv2DBackpropInput:fast", "Conv2DBackpropInput:matmul"]);
  // SumNet's cell layer: a 5 x 3 `valid` filter that leaves one row. By default the product path;
  // with it switched off, the padded convolution (same values).
  for (const [ratio, path] of [[2, "matmul"], [0, "fast"]] as const) {
    const previous = setWasmKernelTuning({ inputGradMatMulRatio: ratio });
    try {
      const cells = checkKernel(
        "Conv2DBackpropInput",
        {
          dy: randomInput(convOutSize([2, 5, 23, 6], [5, 3, 6, 7], 1, "valid", "NHWC"), 11),
          filter: randomInput([5, 3, 6, 7], 12),
        },
        { strides: 1, pad: "valid", dataFormat: "NHWC", inputShape: [2, 5, 23, 6] },
        `cell layer, inputGradMatMulRatio ${ratio}`,
      );
      assert.deepEqual(Object.keys(cells), [`Conv2DBackpropInput:${path}`]);
    } finally {
      setWasmKernelTuning(previous);
    }
  }
  // Explicit padding wider than the filter: the matmul path.
  const wide: Pad = [[0, 0], [3, 1], [0, 2], [0, 0]];
  const paths = checkKernel(
    "Conv2DBackpropInput",
    {
      dy: randomInput(convOutSize([2, 6, 6, 3], [3, 3, 3, 2], 1, wide, "NHWC"), 7),
      filter: randomInput([3, 3, 3, 2], 8),
    },
    { strides: 1, pad: wide, dataFormat: "NHWC", inputShape: [2, 6, 6, 3] },
    "wide pads",
  );
  assert.deepEqual(Object.keys(paths), ["Conv2DBackpropInput:matmul"]);
  // Explicit padding within the filter: fast.
  const narrow: Pad = [[0, 0], [2, 0], [1, 1], [0, 0]];
  const fast = checkKernel(
    "Conv2DBackpropInput",
    {
      dy: randomInput(convOutSize([2, 6, 7, 3], [3, 3, 3, 2], 1, narrow, "NHWC"), 9),
      filter: randomInput([3, 3, 3, 2], 10),
    },
    { strides: 1, pad: narrow, dataFormat: "NHWC", inputShape: [2, 6, 7, 3] },
    "narrow pads",
  );
  assert.deepEqual(Object.keys(fast), ["Conv2DBackpropInput:fast"]);
  // Channels first: the original kernel.
  const nchw = checkKernel(
    "Conv2DBackpropInput",
    {
      dy: randomInput(convOutSize([2, 3, 6, 7], [3, 3, 3, 2], 1, "same", "NCHW"), 13),
      filter: randomInput([3, 3, 3, 2], 14),
    },
    { strides: 1, pad: "same", dataFormat: "NCHW", inputShape: [2, 3, 6, 7] },
    "NCHW",
  );
  assert.deepEqual(Object.keys(nchw), ["Conv2DBackpropInput:original"]);
});

Deno.test("MaxPoolGrad on wasm matches cpu, ties and overlapping windows included", async () => {
  await setup();
  let seed = 200;
  const seen = new Set<string>();
  for (const batch of [1, 3]) {
    for (const channels of [1, 4]) {
      for (const height of [7, 8]) {
        for (const filter of [1, 2, 3]) {
          for (const strides of [1, 2, 3]) {
            for (const pad of ["same", "valid"] as const) {
              for (const levels of [0, 3]) {
                const xShape = [batch, height, 10, channels];
                const x = randomInput(xShape, seed++, { levels });
                tf.setBackend("cpu");
                const y = tf.tidy(() => {
                  const out = tf.maxPool(
                    tf.tensor4d(x.values, xShape as never),
                    filter,
                    strides,
                    pad,
                  );
                  return { shape: out.shape, values: out.dataSync() as Float32Array };
                });
                const dy = randomInput(y.shape, seed++);
                const paths = checkKernel(
                  "MaxPoolGrad",
                  { dy, input: x, output: y },
                  { filterSize: filter, strides, pad },
                  `b${batch} h${height} c${channels} f${filter} s${strides} ${pad} levels${levels}`,
                );
                for (const key of Object.keys(paths)) seen.add(key);
              }
            }
          }
        }
      }
    }
  }
  assert.deepEqual([...seen].sort(), ["MaxPoolGrad:fast", "MaxPoolGrad:tiled2x2"]);
});

Deno.test("MaxPoolGrad on wasm sends the gradient to the first maximum of a window", async () => {
  await setup();
  // One 2x2 window of equal values, one with the max last; -Infinity everywhere in a third.
  const x = new Float32Array([5, 5, 1, 2, -Infinity, -Infinity, 5, 5, 3, 4, -Infinity, -Infinity]);
  tf.setBackend("wasm");
  const dx = tf.tidy(() => {
    const input = tf.tensor4d(x, [1, 2, 6, 1]);
    const dy = tf.tensor4d([10, 20, 30], [1, 1, 3, 1]);
    const output = tf.maxPool(input, 2, 2, "valid");
    return Array.from(
      (tf.engine().runKernel("MaxPoolGrad", { dy, input, output }, {
        filterSize: 2,
        strides: 2,
        pad: "valid",
      }) as tf.Tensor).dataSync(),
    );
  });
  assert.deepEqual(dx, [10, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0]);
});

Deno.test("BatchMatMul on wasm matches cpu with every transpose combination", async () => {
  await setup();
  let seed = 300;
  const seen = new Set<string>();
  const cases: Array<[number[], number[]]> = [
    [[5, 7], [7, 3]], // plain 2D
    [[1, 6, 4], [1, 4, 9]], // batch 1
    [[3, 6, 4], [3, 4, 2]], // batch 3
    [[3, 6, 4], [1, 4, 2]], // broadcast batch
    [[2, 3], [3, 40]], // small a, large b (swapped path with transposeB)
    [[40, 3], [3, 2]], // large a, small b
  ];
  for (const [aShape, bShape] of cases) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const swap = (shape: number[], t: boolean) =>
          t ? [...shape.slice(0, -2), shape[shape.length - 1], shape[shape.length - 2]] : shape;
        const paths = checkKernel(
          "BatchMatMul",
          {
            a: randomInput(swap(aShape, transposeA), seed++),
            b: randomInput(swap(bShape, transposeB), seed++),
          },
          { transposeA, transposeB },
          `${aShape}x${bShape} tA=${transposeA} tB=${transposeB}`,
        );
        for (const key of Object.keys(paths)) seen.add(key);
      }
    }
  }
  for (const key of ["original", "swapped", "transposed"]) {
    assert.ok(seen.has(`BatchMatMul:${key}`), `path ${key} never ran: ${[...seen].join()}`);
  }
});

Deno.test("BatchMatMul on wasm swaps a new large right operand and reuses a seen one", async () => {
  await setup();
  const previous = setWasmKernelTuning({ swapMinWeights: 0 });
  try {
    const a = randomInput([3, 5], 350);
    const b = randomInput([5, 40], 351);
    const paths = checkKernel("BatchMatMul", { a, b }, {
      transposeA: false,
      transposeB: false,
    }, "3x5 @ 5x40");
    assert.deepEqual(Object.keys(paths), ["BatchMatMul:swappedConv"]);
    // The same weights tensor twice: the second product uses XNNPACK's cached packing.
    tf.setBackend("wasm");
    const [first, second] = tf.tidy(() => {
      const at = tf.tensor(a.values, a.shape);
      const bt = tf.tensor(b.values, b.shape);
      wasmKernelPathCounts({ reset: true });
      const one = Array.from(tf.matMul(at, bt).dataSync());
      const two = Array.from(tf.matMul(at, bt).dataSync());
      return [one, two];
    });
    assert.deepEqual(wasmKernelPathCounts({ reset: true }), {
      "BatchMatMul:swappedConv": 1,
      "BatchMatMul:original": 1,
    });
    assertClose({ shape: [3, 40], values: second }, { shape: [3, 40], values: first }, "reuse");
  } finally {
    setWasmKernelTuning(previous);
  }
});

Deno.test("Sum on wasm matches cpu for leading axes and falls back for others", async () => {
  await setup();
  const x = randomInput([4, 5, 6, 3], 400);
  const cases: Array<[number | number[], boolean, string]> = [
    [[0, 1, 2], false, "Sum:fast"],
    [[0, 1, 2], true, "Sum:fast"],
    [[2, 0, 1], false, "Sum:fast"],
    [0, false, "Sum:fast"],
    [[-4, -3], true, "Sum:fast"],
    [[1, 2], false, "Sum:original"],
    [[0, 1, 2, 3], false, "Sum:original"],
    [3, true, "Sum:original"],
  ];
  for (const [axis, keepDims, path] of cases) {
    const paths = checkKernel(
      "Sum",
      { x },
      { axis, keepDims },
      `axis ${axis} keepDims ${keepDims}`,
    );
    assert.deepEqual(Object.keys(paths), [path], `axis ${axis}`);
  }
});

Deno.test("Identity on wasm shares memory and survives disposing its input", async () => {
  await setup();
  tf.setBackend("wasm");
  const x = tf.tensor([1, 2, 3, 4], [2, 2]);
  wasmKernelPathCounts({ reset: true });
  const y = tf.clone(x);
  assert.deepEqual(wasmKernelPathCounts({ reset: true }), { "Identity:shared": 1 });
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
  assert.deepEqual(y.shape, [2, 2]);
  y.dispose();
});

Deno.test("wasm training kernels free every intermediate", async () => {
  await setup();
  tf.setBackend("wasm");
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const x = tf.tensor(randomInput([4, 12, 10, 1], 500).values, [4, 12, 10, 1]) as tf.Tensor4D;
  const w1 = tf.variable(tf.tensor(randomInput([3, 3, 1, 4], 501).values, [3, 3, 1, 4]));
  const w2 = tf.variable(tf.tensor(randomInput([3, 3, 4, 6], 502).values, [3, 3, 4, 6]));
  const w3 = tf.variable(tf.tensor(randomInput([36, 5], 503).values, [36, 5]));
  const optimizer = tf.train.adam(1e-3);
  const step = () =>
    optimizer.minimize(
      () => {
        let h = tf.relu(tf.conv2d(x, w1 as tf.Tensor4D, 1, "same"));
        h = tf.maxPool(h, 2, 2, "valid");
        h = tf.relu(tf.conv2d(h, w2 as tf.Tensor4D, 1, "same"));
        h = tf.maxPool(h, 2, 2, "valid");
        return tf.sum(tf.square(tf.matMul(tf.reshape(h, [4, 36]), w3)));
      },
      false,
      [w1, w2, w3] as tf.Variable[],
    );
  step();
  const before = {
    tensors: tf.memory().numTensors,
    bytes: tf.memory().numBytes,
    ids: backend.numDataIds(),
  };
  for (let i = 0; i < 3; i++) step();
  assert.deepEqual({
    tensors: tf.memory().numTensors,
    bytes: tf.memory().numBytes,
    ids: backend.numDataIds(),
  }, before);
  optimizer.dispose();
  tf.dispose([x, w1, w2, w3]);
});

Deno.test("a small conv net has the same gradients on wasm and cpu", async () => {
  await setup();
  const weights = [
    randomInput([3, 3, 1, 4], 600),
    randomInput([4], 601),
    randomInput([3, 3, 4, 6], 602),
    randomInput([6], 603),
    randomInput([60, 8], 604),
    randomInput([8], 605),
    randomInput([8, 1], 606),
    randomInput([1], 607),
  ];
  const input = randomInput([3, 10, 21, 1], 608);
  const target = randomInput([3, 1], 609);
  const gradients = (backend: "wasm" | "cpu") => {
    tf.setBackend(backend);
    return tf.tidy(() => {
      const model = tf.sequential({
        layers: [
          tf.layers.conv2d({
            inputShape: [10, 21, 1],
            filters: 4,
            kernelSize: 3,
            padding: "same",
            activation: "relu",
          }),
          tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: "same", activation: "relu" }),
          tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 8, activation: "relu" }),
          tf.layers.dense({ units: 1 }),
        ],
      });
      model.setWeights(weights.map((w) => tf.tensor(w.values, w.shape)));
      const x = tf.tensor(input.values, input.shape);
      const y = tf.tensor(target.values, target.shape);
      const { value, grads } = tf.variableGrads(() =>
        tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar
      );
      const out = {
        loss: value.dataSync()[0],
        grads: model.trainableWeights.map((w) => ({
          name: w.originalName,
          shape: grads[w.name].shape,
          values: grads[w.name].dataSync() as Float32Array,
        })),
      };
      model.dispose();
      return out;
    });
  };
  const onWasm = gradients("wasm");
  const onCpu = gradients("cpu");
  assert.ok(Math.abs(onWasm.loss - onCpu.loss) <= 1e-5 * Math.max(1, Math.abs(onCpu.loss)));
  assert.equal(onWasm.grads.length, 8);
  for (let i = 0; i < onCpu.grads.length; i++) {
    assertClose(onWasm.grads[i], onCpu.grads[i], `gradient of ${onCpu.grads[i].name}`);
  }
});
