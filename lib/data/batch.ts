/**
 * What the train loop reads: a source of batches. The study's `Loader` (`loader.ts`), the test
 * and `.npy` pair loaders and SumNet's MNIST strips (`strips.ts`) are sources.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** One batch from a loader: images and float sums. The consumer disposes both tensors. */
export interface Batch {
  /** [b, 40, 168, 1] float32 in [0, 1]. */
  x: tf.Tensor4D;
  /** [b] float32 sums. */
  y: tf.Tensor1D;
  /** Index of the batch within the epoch. */
  index: number;
}

/** What the train loop needs from a data loader (`Loader` in `loader.ts` is one). */
export interface BatchSource {
  readonly name: string;
  readonly size: number;
  readonly numBatches: number;
  /** Images per batch (all but the last), when the loader knows it. */
  readonly batchSize?: number;
  batches(options?: { epoch?: number }): Iterable<Batch>;
}

/** The batches of `loader` that hold its first `count` images (whole batches). */
export function firstImages(loader: BatchSource, count: number): BatchSource {
  if (count >= loader.size) return loader;
  // ceil(size / numBatches) undercounts when the last batch is short (2,000 in batches of 64).
  const perBatch = loader.batchSize ?? Math.ceil(loader.size / loader.numBatches);
  const numBatches = Math.max(1, Math.ceil(count / perBatch));
  return {
    name: `${loader.name} (first ${numBatches * perBatch})`,
    size: Math.min(loader.size, numBatches * perBatch),
    numBatches,
    *batches(options) {
      let i = 0;
      for (const batch of loader.batches(options)) {
        if (i++ === numBatches) {
          tf.dispose([batch.x, batch.y]);
          return;
        }
        yield batch;
      }
    },
  };
}
