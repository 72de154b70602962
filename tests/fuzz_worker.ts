/**
 * Worker of tests/fuzz_support.ts: writes each case's files into a fresh folder, runs the
 * format's readers on them (in memory and from disk, as the CLIs do) and reports the outcome:
 * a result, or the error's class and message, with the time taken and the external memory held.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { dirname, join } from "node:path";
import { readNpyInput, readPngInput } from "../lib/data/input_files.ts";
import { initBackend } from "../lib/runtime/backend.ts";
import { checkImageModel, checkpointTask, loadCheckpoint } from "../lib/training/checkpoint.ts";
import * as tf from "@tensorflow/tfjs";
import { loadNpyPairLoader, readImageSet } from "../lib/data/loader.ts";
import { parseIdx, readIdx } from "../lib/io/idx.ts";
import { asFloat32, openNpy, parseNpy, readNpy } from "../lib/io/npy.ts";
import { decodePng, pngToGray } from "../lib/io/png.ts";
import { collectResults, resultsMarkdown } from "../lib/results/report.ts";
import { parseSafetensors, readSafetensors } from "../lib/io/safetensors.ts";
import { TorchAdam, trainableVariables } from "../lib/training/train.ts";
import type { FuzzCase, FuzzOutcome } from "./fuzz_support.ts";
import { mergeSweeps } from "../lib/sweep/merge.ts";
import { type SweepConfig } from "../lib/sweep/config.ts";
import { planSweep } from "../lib/sweep/run.ts";

/** A reader: gets the case folder and the mutated file's path, returns a short summary. */
type Reader = (dir: string, path: string, fuzzCase: FuzzCase) => Promise<string>;

/** Both results must agree: same success, or errors with the same message. */
async function agree(a: () => Promise<string>, b: () => Promise<string>): Promise<string> {
  const settle = async (f: () => Promise<string>) => {
    try {
      return { ok: true, value: await f() };
    } catch (error) {
      return { ok: false, error };
    }
  };
  const [x, y] = [await settle(a), await settle(b)];
  if (!x.ok && !y.ok) {
    const [mx, my] = [(x.error as Error)?.message, (y.error as Error)?.message];
    if (mx !== my) throw new TypeError(`readers disagree: '${mx}' vs '${my}'`);
    throw x.error;
  }
  if (x.ok !== y.ok) {
    throw new TypeError(
      `readers disagree: ${x.ok ? "result" : (x.error as Error).message} vs ${
        y.ok ? "result" : (y.error as Error).message
      }`,
    );
  }
  return x.value!;
}

const READERS: Record<string, Reader> = {
  async npy(_dir, path) {
    const bytes = await Deno.readFile(path);
    const summary = await agree(
      () => {
        const array = parseNpy(bytes, path);
        const values = asFloat32(array);
        return Promise.resolve(`${array.dtype} [${array.shape}] (${values.length} values)`);
      },
      async () => {
        const array = await readNpy(path);
        return `${array.dtype} [${array.shape}] (${asFloat32(array).length} values)`;
      },
    );
    // The streaming reader (predict and evaluate on large files) reads the same array.
    const whole = parseNpy(bytes, path).data;
    const file = await openNpy(path);
    try {
      for (let start = 0; start < file.rows; start += 7) {
        const block = file.readRows(start, Math.min(7, file.rows - start));
        const expected = whole.subarray(
          start * file.rowElements,
          start * file.rowElements + block.length,
        );
        if (!block.every((v, i) => Object.is(v, expected[i]))) {
          throw new TypeError(`openNpy() rows ${start}.. differ from parseNpy()`);
        }
      }
    } finally {
      file.close();
    }
    // What predict does with an .npy file (it must hold uint8 [N, 40, 168] images).
    await readNpyInput(path).catch((error) => {
      if (!/^Cannot use /.test(error.message)) throw error;
    });
    return summary;
  },

  async idx(_dir, path) {
    const bytes = await Deno.readFile(path);
    return await agree(
      () => {
        const array = parseIdx(bytes, path);
        return Promise.resolve(`${array.dtype} [${array.shape}]`);
      },
      async () => {
        const array = await readIdx(path);
        return `${array.dtype} [${array.shape}]`;
      },
    );
  },

  async png(_dir, path) {
    const bytes = await Deno.readFile(path);
    const image = await decodePng(bytes, path);
    const gray = pngToGray(image);
    // What predict does with a PNG: checks and converts it to 40 x 168.
    const input = await readPngInput(path).catch((error) => {
      if (!/^Cannot use /.test(error.message)) throw error;
      return undefined;
    });
    return `${image.width}x${image.height}x${image.channels} (${gray.length} gray, ${
      input ? "usable" : "refused"
    })`;
  },

  async safetensors(_dir, path) {
    const bytes = await Deno.readFile(path);
    return await agree(
      () => {
        const tensors = parseSafetensors(bytes, path);
        return Promise.resolve(`${tensors.size} tensors`);
      },
      async () => {
        // The filtered reader validates the whole header too.
        await readSafetensors(path, { include: (name) => name.startsWith("a") });
        return `${(await readSafetensors(path)).size} tensors`;
      },
    );
  },

  async checkpoint(dir) {
    const { model, meta, optimizerState } = await loadCheckpoint(dir);
    try {
      const task = checkpointTask(meta.kind, model);
      // What predict and evaluate do: refuse a model that does not read the task's images
      // (this runs one image through it).
      checkImageModel(model, dir);
      if (optimizerState) {
        const adam = new TorchAdam(trainableVariables(model));
        adam.setState(optimizerState);
        adam.dispose();
      }
      return `${meta.kind} ${task}, ${model.countParams()} parameters`;
    } finally {
      model.dispose();
    }
  },

  async sweep(dir) {
    const out = join(dir, "sweep");
    const config = JSON.parse(await Deno.readTextFile(join(dir, "expected_config.json")));
    const results = await collectResults(out);
    const markdown = resultsMarkdown(results);
    // The planning part of runSweep (everything before training): refuses or lists the work.
    const plan = await planSweep({ ...(config as SweepConfig), out });
    await mergeSweeps([out], join(dir, "merged"), { log: () => {} });
    return `${markdown.length} chars of tables, ${plan.todo.length} runs to do`;
  },

  async images(dir) {
    // A pair as training reads it (whole) and as evaluate reads it (a batch at a time): images
    // and labels must fit each other and the task, and both readers must agree.
    const [images, labels] = [join(dir, "images.npy"), join(dir, "labels.npy")];
    return await agree(
      async () => `${(await readImageSet([[images, labels]])).count} images`,
      async () => {
        const loader = await loadNpyPairLoader(images, labels, 2);
        try {
          for (const { x, y } of loader.batches()) tf.dispose([x, y]);
          return `${loader.size} images`;
        } finally {
          loader.close();
        }
      },
    );
  },
};

let format = "";
let root = "";
let caseNumber = 0;

/** Post the outcome of `work`, timing it and reading the external memory afterwards. */
async function report(work: () => Promise<string>): Promise<void> {
  const started = performance.now();
  let outcome: FuzzOutcome;
  try {
    const summary = await work();
    outcome = { ok: true, summary, ms: 0, external: 0 };
  } catch (error) {
    outcome = error instanceof Error
      ? { ok: false, summary: error.constructor.name, message: error.message, ms: 0, external: 0 }
      : { ok: false, summary: "non-error", message: String(error), ms: 0, external: 0 };
  }
  outcome.ms = performance.now() - started;
  outcome.external = Deno.memoryUsage().external;
  self.postMessage(outcome);
}

self.onmessage = async (event: MessageEvent) => {
  const message = event.data;
  if (message.init) {
    format = message.init.format;
    root = message.init.root;
    await report(async () => {
      if (format === "checkpoint") await initBackend("wasm", { quiet: true, threads: 1 });
      if (format === "images") await initBackend("cpu", { quiet: true });
      return "ready";
    });
    return;
  }
  const fuzzCase = message.case as FuzzCase;
  const dir = join(root, `case${caseNumber++ % 2}`);
  await report(async () => {
    // Synchronous file operations: several times faster than async ones for tiny files.
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // first case
    }
    for (const [name, bytes] of Object.entries(fuzzCase.files)) {
      if (bytes === null) continue;
      Deno.mkdirSync(dirname(join(dir, name)), { recursive: true });
      Deno.writeFileSync(join(dir, name), bytes);
    }
    return await READERS[format](dir, join(dir, fuzzCase.target), fuzzCase);
  });
};
