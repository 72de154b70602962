/**
 * digitsum's library, its public API: everything the CLIs, notebooks, sweep, bench and tests use,
 * folder by folder in the order of the study (where the data comes from, what runs it, the
 * models, how they train, what is reported). The notebooks' helpers are under `nb`, as the
 * notebooks import them. docs/ARCHITECTURE.md maps the folders.
 *
 * @module
 */
export * from "./constants.ts";
// io/: file formats and files
export * from "./io/fsutil.ts";
export * from "./io/json.ts";
export * from "./io/text.ts";
export * from "./io/npy.ts";
export * from "./io/idx.ts";
export * from "./io/png.ts";
export * from "./io/safetensors.ts";
// data/: the study's data
export * from "./data/numpy_random.ts";
export * from "./data/generate.ts";
export * from "./data/provenance.ts";
export * from "./data/batch.ts";
export * from "./data/loader.ts";
export * from "./data/strips.ts";
export * from "./data/image_input.ts";
export * from "./data/input_files.ts";
export * from "./data/drawing.ts";
export * from "./data/trace.ts";
// runtime/: what runs it
export * from "./runtime/backend.ts";
export * from "./runtime/native_install.ts";
export * from "./runtime/seed.ts";
export * from "./runtime/progress.ts";
export * from "./runtime/signals.ts";
export * from "./runtime/wasm_kernels.ts";
export * from "./runtime/native_kernels.ts";
// models/: the registry and every model
export * from "./models/mod.ts";
export * from "./models/cnn.ts";
export * from "./models/torch_init.ts";
export * from "./models/vgg.ts";
export * from "./models/sumnet/mod.ts";
// training/: the train loop, checkpoints, runExperiment
export * from "./training/train.ts";
export * from "./training/checkpoint.ts";
export * from "./training/experiment.ts";
export * from "./training/predict.ts";
// results/: the run record, statistics, tables, charts, report
export * from "./results/record.ts";
export * from "./results/stats.ts";
export * from "./results/charts.ts";
export * from "./results/report.ts";
export * from "./results/readme.ts";
// sweep/: the grid
export * from "./sweep/config.ts";
export * from "./sweep/run.ts";
export * from "./sweep/merge.ts";
export * from "./sweep/workers.ts";
// cli/: the flag parsers of every command
export * from "./cli/args.ts";
export * from "./cli/training_flags.ts";
// notebook/: what the notebooks import as `nb`
export * as nb from "./notebook/mod.ts";
