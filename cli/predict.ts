/**
 * `deno task predict <image.png|images.npy> [more files] [--model trained_models/sumnet] [--explain]`
 *
 * Prints the predicted sum of every image: one line per PNG, one per image of an `.npy` file
 * (`N x 40 x 168` uint8, or one `40 x 168` image). With `--explain` (SumNet checkpoints), also the
 * four digits the model reads, where, and how sure it is.
 *
 * PNG inputs are converted to what the model expects, each step said in a `note:` line: colour or
 * alpha to gray, black digits on white inverted to white on black, other sizes scaled (aspect kept)
 * and padded with black to 40 x 168. Images that cannot hold a row of digits are refused.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseIntFlag, runMain } from "../lib/cli/args.ts";
import { BATCH_SIZE, IMAGE_SIZE } from "../lib/constants.ts";
import { type InputImages, readInput } from "../lib/data/input_files.ts";
import { initBackend, parseBackendName } from "../lib/runtime/backend.ts";
import { checkImageModel, checkpointTask, loadCheckpoint } from "../lib/training/checkpoint.ts";
import { formatExplanation, hasCells, predictImages } from "../lib/training/predict.ts";

/** Checkpoint used when `--model` is not given. */
export const DEFAULT_MODEL_DIR = "trained_models/sumnet";

const USAGE = `Usage: deno task predict <image.png|images.npy> [more files] [options]

  --model DIR     checkpoint directory (default ${DEFAULT_MODEL_DIR})
  --explain       also print the digits the model reads (SumNet checkpoints)
  --batch-size N  images per forward pass (default ${BATCH_SIZE})
  --backend NAME  auto|tensorflow|webgpu|wasm|cpu (default: $DIGITSUM_BACKEND or auto)
`;

/** An image waiting for its batch: which input it comes from and its index there. */
interface Queued {
  input: number;
  index: number;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string" },
      explain: { type: "boolean" },
      backend: { type: "string" },
      "batch-size": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const batchSize = parseIntFlag(values["batch-size"], "batch-size") ?? BATCH_SIZE;
  const backend = values.backend === undefined ? undefined : parseBackendName(values.backend);
  // Every input is checked before the model loads: a bad file fails at once, by name.
  const inputs: InputImages[] = [];
  for (const path of positionals) inputs.push(await readInput(path));
  await initBackend(backend);
  const dir = values.model ?? DEFAULT_MODEL_DIR;
  const { model, meta } = await loadCheckpoint(dir);
  checkImageModel(model, dir);
  const task = checkpointTask(meta.kind, model);
  if (values.explain && !hasCells(model)) {
    throw new Error(`--explain needs a SumNet checkpoint; ${dir} is a ${meta.kind} model`);
  }
  console.log(`Model: ${dir} (${meta.kind})`);
  // Images of consecutive inputs share batches (1,000 PNG files make 16 forward passes, not
  // 1,000); an .npy file is read a batch at a time. Lines come out in input order.
  const pixels = new Uint8Array(batchSize * IMAGE_SIZE);
  let queued: Queued[] = [];
  let notesShown = -1;
  const flush = async () => {
    if (queued.length === 0) return;
    const { sums, explanations } = await predictImages(
      model,
      pixels.subarray(0, queued.length * IMAGE_SIZE),
      { task, explain: values.explain, batchSize },
    );
    // One write per batch: 100,000 console.log calls cost more than the model.
    const lines: string[] = [];
    queued.forEach(({ input, index }, i) => {
      if (input > notesShown) {
        for (let k = notesShown + 1; k <= input; k++) {
          for (const note of inputs[k].notes) lines.push(`note: ${note}`);
        }
        notesShown = input;
      }
      const e = explanations?.[i];
      lines.push(
        `${inputs[input].nameOf(index)}: sum ${sums[i]}` +
          (e ? ` (p ${e.sumProbability.toFixed(3)})` : ""),
      );
      if (e) lines.push(...formatExplanation(e));
    });
    console.log(lines.join("\n"));
    queued = [];
  };
  for (const [k, input] of inputs.entries()) {
    try {
      for (let start = 0; start < input.count;) {
        const n = Math.min(batchSize - queued.length, input.count - start);
        pixels.set(await input.read(start, n), queued.length * IMAGE_SIZE);
        for (let i = 0; i < n; i++) queued.push({ input: k, index: start + i });
        start += n;
        if (queued.length === batchSize) await flush();
      }
    } finally {
      input.close();
    }
  }
  await flush();
}

if (import.meta.main) await runMain("predict", main);
