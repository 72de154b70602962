/**
 * The models: every kind registered once, here, with what callers need to know of it (its title,
 * task, whether it belongs to the study, why it cannot be built on this machine, its recipe).
 * Model modules import only `registry.ts`; nothing in `models/` imports this file, so the
 * registry has no cycle. Every caller builds models through {@link buildModel}.
 *
 * @module
 */
import { exists } from "../io/fsutil.ts";
import { buildCnnClassifier, buildCnnRegressor } from "./cnn.ts";
import { registerModel } from "./registry.ts";
import { registerLayers as registerSumNetLayers } from "./sumnet/core.ts";
import { buildSumNet } from "./sumnet/net.ts";
import { SUMNET_RECIPE, SUMNET_ROBUST_RECIPE, SUMNET_SCRATCH_RECIPE } from "./sumnet/recipe.ts";
import {
  buildVggRegressor,
  estimateVggSeconds,
  registerVggLayers,
  VGG_WEIGHTS_COMMAND,
  vggWeightsPath,
} from "./vgg.ts";

export {
  buildModel,
  type BuildOptions,
  type ModelFactory,
  type ModelInfo,
  modelInfo,
  modelKinds,
  ModelUnavailableError,
  type PrepareContext,
  studyModelKinds,
  type Task,
  type TrainingRecipe,
} from "./registry.ts";

registerModel(
  {
    kind: "cnn-regressor",
    title: "CNN Regressor",
    noun: "Regressor",
    prefix: "cnnregressor",
    task: "regression",
    study: true,
  },
  buildCnnRegressor,
);
registerModel(
  {
    kind: "cnn-classifier",
    title: "CNN Classifier",
    noun: "Classifer",
    prefix: "cnnclassifier",
    task: "classification",
    study: true,
  },
  buildCnnClassifier,
);
registerModel(
  {
    kind: "vgg-regressor",
    title: "VGG Regressor",
    noun: "Regressor",
    prefix: "vggregressor",
    task: "regression",
    study: true,
    unavailableReason: async ({ weightsPath }) => {
      const path = vggWeightsPath(weightsPath);
      if (await exists(path)) return undefined;
      return `VGG11 weights not found at ${path}; get them with \`${VGG_WEIGHTS_COMMAND}\``;
    },
    estimateSeconds: ({ trainImages, evalImages, backend }) =>
      estimateVggSeconds(trainImages, backend) +
      estimateVggSeconds(evalImages, backend, { training: false }),
  },
  buildVggRegressor,
);
// digitsum's own model (not part of the study): models/sumnet/.
registerModel(
  {
    kind: "sumnet",
    title: "SumNet",
    noun: "Model",
    prefix: "sumnet",
    task: "classification",
    study: false,
    recipe: SUMNET_RECIPE,
  },
  buildSumNet,
);
registerModel(
  {
    kind: "sumnet-robust",
    title: "SumNet (robust)",
    noun: "Model",
    prefix: "sumnetrobust",
    task: "classification",
    study: false,
    recipe: SUMNET_ROBUST_RECIPE,
  },
  buildSumNet,
);
registerModel(
  {
    kind: "sumnet-scratch",
    title: "SumNet (sums only)",
    noun: "Model",
    prefix: "sumnetscratch",
    task: "classification",
    study: false,
    recipe: SUMNET_SCRATCH_RECIPE,
  },
  buildSumNet,
);

/** Register every custom layer class, so that checkpoints using them can be loaded. */
export function registerCustomLayers(): void {
  registerVggLayers();
  registerSumNetLayers();
}
