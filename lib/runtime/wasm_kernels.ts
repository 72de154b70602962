/**
 * Training kernels for the tfjs `wasm` backend.
 *
 * The shipped wasm backend (tfjs 4.22) is built for inference: it has no
 * `Conv2DBackpropFilter`, and its `Conv2DBackpropInput`, `MaxPoolGrad` and
 * transposed `BatchMatMul` are plain loops that dominate a training step. This
 * module registers replacements that are built out of the backend's fast
 * XNNPACK kernels (`Conv2D`, `Transpose`, plain `BatchMatMul`) or a tight JS
 * loop over the wasm heap, and that fall back to a correct (slower) path for
 * every case they do not cover (NCHW, strides other than 1, odd paddings,
 * non-float32 inputs).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";

/** The backend these kernels are registered for. */
const BACKEND = "wasm";

/** Tunable sizes of the kernels (see {@link setWasmKernelTuning}). */
export interface WasmKernelTuning {
  /** Patch sizes (fh*fw*ci) up to this use the im2col filter gradient. */
  im2colMaxPatch: number;
  /** Images per XNNPACK call in the filter gradient (keeps the packed operand cache-sized). */
  filterGradBatchGroup: number;
  /** Plain products with a new `b` of at least this many elements swap their operands. */
  swapMinWeights: number;
  /**
   * Stride-1 input gradients take the product + col2im path when dx has at least this many times
   * the positions of dy (0: never; strides and wide pads always take it).
   */
  inputGradMatMulRatio: number;
}

/** The measured defaults (bench/bench.ts, study CNN, batch 64). */
export const DEFAULT_WASM_KERNEL_TUNING: Readonly<WasmKernelTuning> = {
  im2colMaxPatch: 16,
  filterGradBatchGroup: 16,
  swapMinWeights: 1 << 20,
  inputGradMatMulRatio: 2,
};

const tuning: WasmKernelTuning = { ...DEFAULT_WASM_KERNEL_TUNING };

/** Changes kernel sizes (for tests and measurements); returns the previous values. */
export function setWasmKernelTuning(change: Partial<WasmKernelTuning>): WasmKernelTuning {
  const previous = { ...tuning };
  for (const [key, value] of Object.entries(change)) {
    if (!Number.isInteger(value) || (value as number) < 0) {
      throw new Error(`setWasmKernelTuning: ${key} must be a non-negative integer, got ${value}`);
    }
  }
  Object.assign(tuning, change);
  return previous;
}

/** The kernels {@link registerWasmTrainingKernels} registers (or replaces). */
export const WASM_TRAINING_KERNELS = [
  "Conv2DBackpropFilter",
  "Conv2DBackpropInput",
  "MaxPoolGrad",
  "BatchMatMul",
  "Sum",
  "Identity",
] as const;

/** Name of one kernel in {@link WASM_TRAINING_KERNELS}. */
export type WasmTrainingKernel = typeof WASM_TRAINING_KERNELS[number];

/** What the wasm backend object offers that these kernels use (not in tfjs' public types). */
interface WasmBackend extends tf.KernelBackend {
  dataIdMap: {
    get(dataId: unknown): { id: number; memoryOffset: number; shape: number[]; dtype: string };
  };
  wasm: { HEAPU8: Uint8Array; wasmMemory?: WebAssembly.Memory };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: unknown, force?: boolean): boolean;
}

/** Arguments every kernel function receives. */
interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

type AnyKernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** `b` operands of plain products seen so far (XNNPACK has their packing cached). */
const seenWeights = new WeakSet<object>();

/** Original kernels of the wasm backend that ours replace (for fallbacks). */
const originals = new Map<string, tf.KernelConfig>();

/** How often each path ran, keyed like `Conv2DBackpropInput:fast`. */
const pathCounts = new Map<string, number>();

let registered = false;

function count(key: string): void {
  pathCounts.set(key, (pathCounts.get(key) ?? 0) + 1);
}

/**
 * Counts of the paths taken by the registered kernels since the last reset,
 * e.g. `{ "Conv2DBackpropInput:fast": 12, "Conv2DBackpropInput:original": 1 }`.
 * Tests use it to check that a fallback really ran.
 */
export function wasmKernelPathCounts(options: { reset?: boolean } = {}): Record<string, number> {
  const out = Object.fromEntries(pathCounts);
  if (options.reset) pathCounts.clear();
  return out;
}

/** Calls another kernel of the wasm backend directly (no engine bookkeeping). */
function callKernel(
  name: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
  backend: WasmBackend,
): tf.TensorInfo {
  const config = originals.get(name) ?? tf.getKernel(name, BACKEND);
  if (config == null) {
    throw new Error(`wasm training kernels: the wasm backend has no '${name}' kernel`);
  }
  const out = (config.kernelFunc as unknown as AnyKernelFunc)({ inputs, backend, attrs });
  return Array.isArray(out) ? out[0] : out;
}

function dispose(backend: WasmBackend, ...infos: tf.TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

/** A float32 view of a tensor's memory on the wasm heap (valid until the next allocation). */
function heapF32(backend: WasmBackend, info: tf.TensorInfo): Float32Array {
  const buffer = backend.wasm.wasmMemory?.buffer ?? backend.wasm.HEAPU8.buffer;
  const offset = backend.dataIdMap.get(info.dataId).memoryOffset;
  return new Float32Array(buffer, offset, tf.util.sizeFromShape(info.shape));
}

function transpose(backend: WasmBackend, x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
  return callKernel("Transpose", { x }, { perm }, backend);
}

/** Tile edge of {@link transpose2D} (16 beats 32 and 64 for the [N, 32] case). */
const TRANSPOSE_TILE = 16;

/**
 * [rows, cols] -> [cols, rows] of a float32 tensor, tiled, in JS: for tall matrices with a few
 * dozen columns (whose row stride is a multiple of 4 KiB) it beats the wasm `Transpose`.
 */
function transpose2D(
  backend: WasmBackend,
  x: tf.TensorInfo,
  rows: number,
  cols: number,
): tf.TensorInfo {
  const out = backend.makeOutput([cols, rows], "float32");
  const dst = heapF32(backend, out);
  const src = heapF32(backend, x);
  for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_TILE) {
    const i1 = Math.min(rows, i0 + TRANSPOSE_TILE);
    for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_TILE) {
      const j1 = Math.min(cols, j0 + TRANSPOSE_TILE);
      for (let i = i0; i < i1; i++) {
        const row = i * cols;
        for (let j = j0; j < j1; j++) dst[j * rows + i] = src[row + j];
      }
    }
  }
  return out;
}

/** The same data under another shape of the same size (no copy, not a new tensor). */
function asShape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/**
 * Copies rows [start, start + count) of the leading axis into a new tensor. (The wasm `Slice`
 * kernel reads the whole input back to JS first, which costs more than the slice.)
 */
function leadingRows(
  backend: WasmBackend,
  x: tf.TensorInfo,
  start: number,
  count: number,
): tf.TensorInfo {
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
  const out = backend.makeOutput([count, ...x.shape.slice(1)], "float32");
  const dst = heapF32(backend, out);
  const src = heapF32(backend, x);
  dst.set(src.subarray(start * rowSize, (start + count) * rowSize));
  return out;
}

// ---------------------------------------------------------------------------
// Conv2DBackpropFilter
// ---------------------------------------------------------------------------

/**
 * dW[kh, kw, ci, co] = sum over b, i, j of xPad[b, i*sh + kh, j*sw + kw, ci] * dy[b, i, j, co].
 *
 * Read with x' = x transposed to [ci, H, W, b] as the conv input (batch ci, channels b) and
 * dy' = dy transposed to [outH, outW, b, co] as the filter, that is a stride-1 `Conv2D` whose
 * dilation is the forward stride and whose output is [ci, fh, fw, co]: one XNNPACK call.
 */
function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as {
    strides: number | [number, number];
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    filterShape: [number, number, number, number];
  };
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  if (
    info.dataFormat !== "channelsLast" || x.dtype !== "float32" || dy.dtype !== "float32" ||
    info.dilationHeight !== 1 || info.dilationWidth !== 1
  ) {
    count("Conv2DBackpropFilter:loop");
    return conv2DBackpropFilterLoop(backend, x, dy, info);
  }
  const kk = info.filterHeight * info.filterWidth * info.inChannels;
  if (kk <= tuning.im2colMaxPatch) {
    count("Conv2DBackpropFilter:im2col");
    return conv2DBackpropFilterIm2col(backend, x, dy, info);
  }
  count("Conv2DBackpropFilter:fast");
  const { top, left } = info.padInfo;
  const fh = info.filterHeight, fw = info.filterWidth;
  const sh = info.strideHeight, sw = info.strideWidth;
  const ci = info.inChannels, co = info.outChannels;
  // Padding after the input that makes the conv output exactly [fh, fw]; negative = crop.
  const bottom = fh + (info.outHeight - 1) * sh - info.inHeight - top;
  const right = fw + (info.outWidth - 1) * sw - info.inWidth - left;
  const cropH = info.inHeight + Math.min(0, bottom);
  const cropW = info.inWidth + Math.min(0, right);
  const pads = [[0, 0], [top, Math.max(0, bottom)], [left, Math.max(0, right)], [0, 0]];
  // The batch is the contraction axis: do it in groups so each packed filter stays in cache.
  const group = Math.max(1, Math.min(info.batchSize, tuning.filterGradBatchGroup));
  const acc = new Float32Array(ci * fh * fw * co); // [ci, fh, fw, co]
  for (let b0 = 0; b0 < info.batchSize; b0 += group) {
    const g = Math.min(group, info.batchSize - b0);
    let xg = g === info.batchSize ? x : leadingRows(backend, x, b0, g); // [g, H, W, ci]
    if (cropH !== info.inHeight || cropW !== info.inWidth) {
      const cropped = cropRowsCols(backend, xg, cropH, cropW);
      if (xg !== x) dispose(backend, xg);
      xg = cropped;
    }
    const dyg = g === info.batchSize ? dy : leadingRows(backend, dy, b0, g); // [g, oH, oW, co]
    const xT = transpose(backend, xg, [3, 1, 2, 0]); // [ci, H, W, g]
    const dyT = transpose(backend, dyg, [1, 2, 0, 3]); // [oH, oW, g, co]
    if (xg !== x) dispose(backend, xg);
    if (dyg !== dy) dispose(backend, dyg);
    const conv = callKernel("Conv2D", { x: xT, filter: dyT }, {
      strides: [1, 1],
      pad: pads,
      dataFormat: "NHWC",
      dilations: [sh, sw],
    } as unknown as tf.NamedAttrMap, backend); // [ci, fh, fw, co]
    dispose(backend, xT, dyT);
    const part = heapF32(backend, conv);
    for (let k = 0; k < acc.length; k++) acc[k] += part[k];
    dispose(backend, conv);
  }
  // [ci, fh, fw, co] -> [fh, fw, ci, co]
  const out = backend.makeOutput([fh, fw, ci, co], "float32");
  const dW = heapF32(backend, out);
  for (let p = 0; p < ci; p++) {
    for (let k = 0; k < fh * fw; k++) {
      dW.set(acc.subarray((p * fh * fw + k) * co, (p * fh * fw + k + 1) * co), (k * ci + p) * co);
    }
  }
  return out;
}

/** x[:, :h, :w, :] as a new tensor (x is NHWC float32). */
function cropRowsCols(backend: WasmBackend, x: tf.TensorInfo, h: number, w: number): tf.TensorInfo {
  const [n, H, W, c] = x.shape;
  const out = backend.makeOutput([n, h, w, c], "float32");
  const dst = heapF32(backend, out);
  const src = heapF32(backend, x);
  for (let b = 0; b < n; b++) {
    for (let r = 0; r < h; r++) {
      const from = ((b * H + r) * W) * c;
      dst.set(src.subarray(from, from + w * c), ((b * h + r) * w) * c);
    }
  }
  return out;
}

/**
 * Few input channels (the first conv layer): dW^T [co, kk] = dy^T [co, N] x P [N, kk] with the
 * patch matrix P (kk = fh*fw*ci columns) built in JS. P is the small operand, so it is the one
 * XNNPACK packs.
 */
function conv2DBackpropFilterIm2col(
  backend: WasmBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const fh = info.filterHeight, fw = info.filterWidth;
  const ci = info.inChannels, co = info.outChannels;
  const H = info.inHeight, W = info.inWidth, oH = info.outHeight, oW = info.outWidth;
  const kk = fh * fw * ci;
  const n = info.batchSize * oH * oW;
  const patches = backend.makeOutput([n, kk], "float32");
  const P = heapF32(backend, patches);
  const xv = heapF32(backend, x);
  let at = 0;
  for (let b = 0; b < info.batchSize; b++) {
    for (let i = 0; i < oH; i++) {
      const r0 = i * info.strideHeight - info.padInfo.top;
      for (let j = 0; j < oW; j++) {
        const c0 = j * info.strideWidth - info.padInfo.left;
        for (let kh = 0; kh < fh; kh++) {
          const r = r0 + kh;
          if (r < 0 || r >= H) {
            for (let q = 0; q < fw * ci; q++) P[at++] = 0;
            continue;
          }
          for (let kw = 0; kw < fw; kw++) {
            const c = c0 + kw;
            if (c < 0 || c >= W) {
              for (let p = 0; p < ci; p++) P[at++] = 0;
              continue;
            }
            const base = ((b * H + r) * W + c) * ci;
            for (let p = 0; p < ci; p++) P[at++] = xv[base + p];
          }
        }
      }
    }
  }
  const dyT = transpose2D(backend, dy, n, co); // [co, N]
  const prod = callKernel(
    "BatchMatMul",
    {
      a: asShape(dyT, [1, co, n]),
      b: asShape(patches, [1, n, kk]),
    },
    { transposeA: false, transposeB: false },
    backend,
  ); // [1, co, kk]
  dispose(backend, dyT, patches);
  const out = backend.makeOutput([fh, fw, ci, co], "float32");
  const dW = heapF32(backend, out);
  const src = heapF32(backend, prod);
  for (let q = 0; q < co; q++) {
    for (let k = 0; k < kk; k++) dW[k * co + q] = src[q * kk + k];
  }
  dispose(backend, prod);
  return out;
}

/** Direct loop over the heap: any padding, stride and data format (slow; fallback only). */
function conv2DBackpropFilterLoop(
  backend: WasmBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const xCast = x.dtype === "float32"
    ? x
    : callKernel("Cast", { x }, { dtype: "float32" }, backend);
  const dyCast = dy.dtype === "float32"
    ? dy
    : callKernel("Cast", { x: dy }, { dtype: "float32" }, backend);
  const fh = info.filterHeight, fw = info.filterWidth;
  const ci = info.inChannels, co = info.outChannels;
  const out = backend.makeOutput([fh, fw, ci, co], "float32");
  const dW = heapF32(backend, out);
  const xv = heapF32(backend, xCast);
  const dyv = heapF32(backend, dyCast);
  dW.fill(0);
  const last = info.dataFormat === "channelsLast";
  const H = info.inHeight, W = info.inWidth, oH = info.outHeight, oW = info.outWidth;
  // Element strides of x and dy for (b, row, col, channel) in either layout.
  const xs = last ? [H * W * ci, W * ci, ci, 1] : [ci * H * W, W, 1, H * W];
  const ys = last ? [oH * oW * co, oW * co, co, 1] : [co * oH * oW, oW, 1, oH * oW];
  for (let b = 0; b < info.batchSize; b++) {
    for (let i = 0; i < oH; i++) {
      for (let j = 0; j < oW; j++) {
        const yBase = b * ys[0] + i * ys[1] + j * ys[2];
        for (let kh = 0; kh < fh; kh++) {
          const r = i * info.strideHeight + kh - info.padInfo.top;
          if (r < 0 || r >= H) continue;
          for (let kw = 0; kw < fw; kw++) {
            const c = j * info.strideWidth + kw - info.padInfo.left;
            if (c < 0 || c >= W) continue;
            const xBase = b * xs[0] + r * xs[1] + c * xs[2];
            for (let p = 0; p < ci; p++) {
              const xval = xv[xBase + p * xs[3]];
              if (xval === 0) continue;
              const wBase = ((kh * fw + kw) * ci + p) * co;
              for (let q = 0; q < co; q++) dW[wBase + q] += xval * dyv[yBase + q * ys[3]];
            }
          }
        }
      }
    }
  }
  if (xCast !== x) dispose(backend, xCast);
  if (dyCast !== dy) dispose(backend, dyCast);
  return out;
}

// ---------------------------------------------------------------------------
// Conv2DBackpropInput
// ---------------------------------------------------------------------------

/**
 * NHWC float32 only (everything else goes to the original kernel), by one of two paths:
 *
 * - `fast`, for stride 1 when dy is about as large as dx (`same` padding): dx = valid-style
 *   `Conv2D` of dy, padded by (f - 1 - pad) on each side, with the filter flipped in space and
 *   its channel axes swapped. XNNPACK does the padding, so no padded copy of dy is made.
 * - `matmul`, for strides above 1, paddings wider than the filter, and whenever dx has at least
 *   twice as many positions as dy (a `valid` convolution with a large filter, such as SumNet's
 *   5 x 3 cell layer, where the padded convolution would multiply mostly zeros):
 *   Z = dy [N, co] x W^T [co, fh*fw*ci] as one product, then each row of Z is added into the
 *   fh x fw window of dx it came from (col2im).
 */
function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as {
    strides: number | [number, number];
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    inputShape: [number, number, number, number];
  };
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  const fh = info.filterHeight, fw = info.filterWidth;
  const { top, bottom, left, right } = info.padInfo;
  const pads = [fh - 1 - top, fh - 1 - bottom, fw - 1 - left, fw - 1 - right];
  if (info.dataFormat !== "channelsLast" || dy.dtype !== "float32" || filter.dtype !== "float32") {
    count("Conv2DBackpropInput:original");
    return callKernel("Conv2DBackpropInput", args.inputs, args.attrs ?? {}, backend);
  }
  if (
    info.strideHeight !== 1 || info.strideWidth !== 1 || pads.some((p) => p < 0) ||
    (tuning.inputGradMatMulRatio > 0 &&
      info.inHeight * info.inWidth >= tuning.inputGradMatMulRatio * info.outHeight * info.outWidth)
  ) {
    count("Conv2DBackpropInput:matmul");
    return conv2DBackpropInputMatMul(backend, dy, filter, info);
  }
  count("Conv2DBackpropInput:fast");
  const ci = info.inChannels, co = info.outChannels;
  // Flipped, channel-swapped filter: wT[a, b, q, p] = w[fh-1-a, fw-1-b, p, q]  [fh, fw, co, ci]
  const wT = backend.makeOutput([fh, fw, co, ci], "float32");
  const src = heapF32(backend, filter);
  const dst = heapF32(backend, wT);
  for (let a = 0; a < fh; a++) {
    for (let b = 0; b < fw; b++) {
      const srcBase = ((fh - 1 - a) * fw + (fw - 1 - b)) * ci * co;
      const dstBase = (a * fw + b) * co * ci;
      for (let p = 0; p < ci; p++) {
        for (let q = 0; q < co; q++) dst[dstBase + q * ci + p] = src[srcBase + p * co + q];
      }
    }
  }
  const dx = callKernel("Conv2D", { x: dy, filter: wT }, {
    strides: [1, 1],
    pad: [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]],
    dataFormat: "NHWC",
    dilations: [1, 1],
  } as unknown as tf.NamedAttrMap, backend);
  dispose(backend, wT);
  return dx;
}

/** dx by one product and a col2im scatter (see {@link conv2DBackpropInput}); any stride/padding. */
function conv2DBackpropInputMatMul(
  backend: WasmBackend,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const fh = info.filterHeight, fw = info.filterWidth;
  const ci = info.inChannels, co = info.outChannels;
  const H = info.inHeight, W = info.inWidth, oH = info.outHeight, oW = info.outWidth;
  const sh = info.strideHeight, sw = info.strideWidth;
  const { top, left } = info.padInfo;
  const n = info.batchSize * oH * oW;
  const k = fh * fw * ci;
  const wT = transpose2D(backend, filter, k, co); // filter [fh, fw, ci, co] is [k, co]: -> [co, k]
  const z = callKernel(
    "BatchMatMul",
    { a: asShape(dy, [1, n, co]), b: asShape(wT, [1, co, k]) },
    { transposeA: false, transposeB: false },
    backend,
  ); // [1, n, k]: row (b, i, j), column (kh, kw, p)
  dispose(backend, wT);
  const out = backend.makeOutput([info.batchSize, H, W, ci], "float32");
  const dx = heapF32(backend, out); // views taken after the last allocation
  const zv = heapF32(backend, z);
  dx.fill(0);
  for (let b = 0; b < info.batchSize; b++) {
    for (let i = 0; i < oH; i++) {
      for (let j = 0; j < oW; j++) {
        const row = ((b * oH + i) * oW + j) * k;
        for (let kh = 0; kh < fh; kh++) {
          const r = i * sh + kh - top;
          if (r < 0 || r >= H) continue;
          for (let kw = 0; kw < fw; kw++) {
            const c = j * sw + kw - left;
            if (c < 0 || c >= W) continue;
            const to = ((b * H + r) * W + c) * ci;
            const from = row + (kh * fw + kw) * ci;
            for (let p = 0; p < ci; p++) dx[to + p] += zv[from + p];
          }
        }
      }
    }
  }
  dispose(backend, z);
  return out;
}

// ---------------------------------------------------------------------------
// MaxPoolGrad
// ---------------------------------------------------------------------------

/**
 * dx gets dy of every pooling window at the window's first maximum (row-major scan order,
 * strictly greater wins, out-of-bounds and NaN never win: the cpu backend's rule). Windows
 * that overlap add up. One pass over x, a channel vector at a time.
 */
function maxPoolGrad(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = args.attrs as unknown as {
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dimRoundingMode?: "floor" | "round" | "ceil";
  };
  if (input.dtype !== "float32" || dy.dtype !== "float32") {
    count("MaxPoolGrad:original");
    return callKernel("MaxPoolGrad", args.inputs, args.attrs ?? {}, backend);
  }
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  if (
    info.filterHeight === 2 && info.filterWidth === 2 && info.strideHeight === 2 &&
    info.strideWidth === 2 && info.padInfo.top === 0 && info.padInfo.left === 0 &&
    info.inHeight === 2 * info.outHeight && info.inWidth === 2 * info.outWidth
  ) {
    count("MaxPoolGrad:tiled2x2");
    return maxPoolGrad2x2(backend, dy, input, info);
  }
  count("MaxPoolGrad:fast");
  const out = backend.makeOutput(input.shape.slice(), "float32");
  const dx = heapF32(backend, out);
  const xv = heapF32(backend, input);
  const dyv = heapF32(backend, dy);
  dx.fill(0);
  const C = info.inChannels, H = info.inHeight, W = info.inWidth;
  const oH = info.outHeight, oW = info.outWidth;
  const fh = info.effectiveFilterHeight, fw = info.effectiveFilterWidth;
  const best = new Float32Array(C);
  const where = new Int32Array(C);
  for (let b = 0; b < info.batchSize; b++) {
    const xBatch = b * H * W * C;
    for (let i = 0; i < oH; i++) {
      const r0 = i * info.strideHeight - info.padInfo.top;
      const rStart = Math.max(0, r0), rEnd = Math.min(H, r0 + fh);
      for (let j = 0; j < oW; j++) {
        const c0 = j * info.strideWidth - info.padInfo.left;
        const cStart = Math.max(0, c0), cEnd = Math.min(W, c0 + fw);
        best.fill(-Infinity);
        where.fill(-1);
        for (let r = rStart; r < rEnd; r++) {
          for (let c = cStart; c < cEnd; c++) {
            const base = xBatch + (r * W + c) * C;
            for (let d = 0; d < C; d++) {
              const v = xv[base + d];
              if (v > best[d]) {
                best[d] = v;
                where[d] = base + d;
              }
            }
          }
        }
        const yBase = ((b * oH + i) * oW + j) * C;
        for (let d = 0; d < C; d++) {
          const at = where[d];
          if (at >= 0) dx[at] += dyv[yBase + d];
        }
      }
    }
  }
  return out;
}

/**
 * 2x2 windows with stride 2 that tile the input exactly (the study's pools): every dx element
 * belongs to one window, so each is written once, no zero fill and no scatter.
 */
function maxPoolGrad2x2(
  backend: WasmBackend,
  dy: tf.TensorInfo,
  input: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const out = backend.makeOutput(input.shape.slice(), "float32");
  const dx = heapF32(backend, out);
  const xv = heapF32(backend, input);
  const dyv = heapF32(backend, dy);
  const C = info.inChannels, W = info.inWidth, oH = info.outHeight, oW = info.outWidth;
  const rowStep = W * C;
  let y = 0;
  for (let b = 0; b < info.batchSize; b++) {
    for (let i = 0; i < oH; i++) {
      let p0 = ((b * info.inHeight + 2 * i) * W) * C;
      for (let j = 0; j < oW; j++, p0 += 2 * C) {
        const p1 = p0 + C, p2 = p0 + rowStep, p3 = p2 + C;
        for (let d = 0; d < C; d++, y++) {
          // First strict maximum in scan order (0,0), (0,1), (1,0), (1,1), as the cpu backend.
          const v0 = xv[p0 + d], v1 = xv[p1 + d], v2 = xv[p2 + d], v3 = xv[p3 + d];
          let best = -Infinity, k = -1;
          if (v0 > best) {
            best = v0;
            k = 0;
          }
          if (v1 > best) {
            best = v1;
            k = 1;
          }
          if (v2 > best) {
            best = v2;
            k = 2;
          }
          if (v3 > best) k = 3;
          const g = dyv[y];
          dx[p0 + d] = k === 0 ? g : 0;
          dx[p1 + d] = k === 1 ? g : 0;
          dx[p2 + d] = k === 2 ? g : 0;
          dx[p3 + d] = k === 3 ? g : 0;
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

/**
 * Shares the input's memory (reference counted, as the cpu backend and wasm's own `Reshape`
 * do) instead of copying it; tensors are immutable, so nothing can tell the difference.
 */
function identity(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend & { incRef(dataId: unknown): void };
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === "string") {
    count("Identity:original");
    return callKernel("Identity", args.inputs, {}, backend);
  }
  count("Identity:shared");
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
}

// ---------------------------------------------------------------------------
// BatchMatMul
// ---------------------------------------------------------------------------

/**
 * The wasm backend multiplies with XNNPACK only without transposes (else a scalar loop), and
 * XNNPACK packs the right operand `b` on every new `b`, which costs far more per element than
 * the product when `b` is large. So: transposed operands get an explicit `Transpose`, and
 * `a x b^T` with a large `b` is computed as `(b x a^T)^T`, which packs the small `a^T` instead.
 */
function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const aBatch = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const bBatch = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const aRows = a.shape[a.shape.length - 2], aCols = a.shape[a.shape.length - 1];
  const bRows = b.shape[b.shape.length - 2], bCols = b.shape[b.shape.length - 1];
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    count("BatchMatMul:original");
    return callKernel("BatchMatMul", args.inputs, args.attrs ?? {}, backend);
  }
  if (!transposeA && !transposeB) {
    // XNNPACK caches the packed `b` per tensor: a `b` seen before (inference weights) is cheap.
    const seenBefore = seenWeights.has(b.dataId as object);
    seenWeights.add(b.dataId as object);
    if (
      seenBefore || aBatch !== 1 || bBatch !== 1 ||
      bRows * bCols < tuning.swapMinWeights || bRows * bCols <= aRows * aCols + aRows * bCols
    ) {
      count("BatchMatMul:original");
      return callKernel("BatchMatMul", args.inputs, args.attrs ?? {}, backend);
    }
    // A new large `b` (a training step's weights): out^T [N, M] = b^T [N, K] x a^T [K, M] as a
    // 1x1 convolution, which packs the small a^T (the conv path packs faster than the FC one).
    count("BatchMatMul:swappedConv");
    const bT = transpose2D(backend, b, bRows, bCols); // [N, K]
    const aT = transpose2D(backend, a, aRows, aCols); // [K, M]
    const prodT = callKernel("Conv2D", {
      x: asShape(bT, [1, 1, bCols, bRows]),
      filter: asShape(aT, [1, 1, aCols, aRows]),
    }, {
      strides: [1, 1],
      pad: "valid",
      dataFormat: "NHWC",
      dilations: [1, 1],
    } as unknown as tf.NamedAttrMap, backend); // [1, 1, N, M]
    dispose(backend, bT, aT);
    const out = transpose2D(backend, prodT, bCols, aRows); // [M, N]
    dispose(backend, prodT);
    return asShape(out, [...a.shape.slice(0, -2), aRows, bCols]);
  }
  const swapLast = (rank: number) => [...Array(rank - 2).keys(), rank - 1, rank - 2];
  if (aBatch === 1 && bBatch === 1 && transposeB && !transposeA && bRows * bCols > aRows * aCols) {
    count("BatchMatMul:swapped");
    // a [M, K], b [N, K]: out^T [N, M] = b [N, K] x a^T [K, M]
    const aT = transpose(backend, asShape(a, [aRows, aCols]), [1, 0]); // [K, M]
    const prodT = callKernel(
      "BatchMatMul",
      {
        a: asShape(b, [1, bRows, bCols]),
        b: asShape(aT, [1, aCols, aRows]),
      },
      { transposeA: false, transposeB: false },
      backend,
    ); // [1, N, M]
    dispose(backend, aT);
    const out = transpose(backend, asShape(prodT, [bRows, aRows]), [1, 0]); // [M, N]
    dispose(backend, prodT);
    const outShape = tf.broadcast_util.assertAndGetBroadcastShape(
      a.shape.slice(0, -2),
      b.shape.slice(0, -2),
    ).concat([aRows, bRows]);
    return asShape(out, outShape);
  }
  count("BatchMatMul:transposed");
  const aT = transposeA ? transpose(backend, a, swapLast(a.shape.length)) : a;
  const bT = transposeB ? transpose(backend, b, swapLast(b.shape.length)) : b;
  const out = callKernel(
    "BatchMatMul",
    { a: aT, b: bT },
    { transposeA: false, transposeB: false },
    backend,
  );
  if (aT !== a) dispose(backend, aT);
  if (bT !== b) dispose(backend, bT);
  return out;
}

// ---------------------------------------------------------------------------
// Sum
// ---------------------------------------------------------------------------

/**
 * Sums over leading axes (bias gradients: [b, h, w, c] -> [c]) in one streaming JS pass; the
 * wasm kernel transposes the reduced axes to the end first. Other reductions go to the
 * original kernel.
 */
function sum(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
  const axes = tf.util.parseAxisParam(axis, x.shape).slice().sort((p, q) => p - q);
  const leading = axes.length > 0 && axes.length < x.shape.length &&
    axes.every((value, index) => value === index);
  if (x.dtype !== "float32" || !leading) {
    count("Sum:original");
    return callKernel("Sum", args.inputs, args.attrs ?? {}, backend);
  }
  count("Sum:fast");
  const outer = tf.util.sizeFromShape(x.shape.slice(0, axes.length));
  const inner = tf.util.sizeFromShape(x.shape.slice(axes.length));
  const outShape = keepDims
    ? x.shape.map((d, i) => (i < axes.length ? 1 : d))
    : x.shape.slice(axes.length);
  const out = backend.makeOutput(outShape, "float32");
  const acc = new Float64Array(inner);
  const xv = heapF32(backend, x);
  for (let o = 0; o < outer; o++) {
    const base = o * inner;
    for (let i = 0; i < inner; i++) acc[i] += xv[base + i];
  }
  heapF32(backend, out).set(acc);
  return out;
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

const IMPLEMENTATIONS: Record<WasmTrainingKernel, AnyKernelFunc> = {
  Conv2DBackpropFilter: conv2DBackpropFilter,
  Conv2DBackpropInput: conv2DBackpropInput,
  MaxPoolGrad: maxPoolGrad,
  BatchMatMul: batchMatMul,
  Sum: sum,
  Identity: identity,
};

/**
 * Registers the training kernels for the `wasm` backend (idempotent). Kernels the backend
 * already has are unregistered first and re-registered with the original's `setupFunc`, and
 * the original stays reachable for the cases the replacement does not cover.
 *
 * @returns the names of the kernels now provided by this module
 */
export function registerWasmTrainingKernels(): string[] {
  if (registered) return [...WASM_TRAINING_KERNELS];
  for (const name of ["Conv2D", "Transpose", "Cast"]) {
    if (tf.getKernel(name, BACKEND) == null) {
      throw new Error(`Cannot register wasm training kernels: the wasm backend lacks '${name}'`);
    }
  }
  for (const name of WASM_TRAINING_KERNELS) {
    const original = tf.getKernel(name, BACKEND);
    if (original != null) {
      originals.set(name, original);
      tf.unregisterKernel(name, BACKEND);
    }
    tf.registerKernel({
      kernelName: name,
      backendName: BACKEND,
      setupFunc: original?.setupFunc,
      kernelFunc: IMPLEMENTATIONS[name] as unknown as tf.KernelFunc,
    });
  }
  // The helpers above call these directly; remember them so a later re-registration by
  // someone else cannot route our internal calls back into us.
  for (const name of ["Conv2D", "Transpose", "Cast"]) {
    originals.set(name, tf.getKernel(name, BACKEND)!);
  }
  registered = true;
  return [...WASM_TRAINING_KERNELS];
}
