/** Shared numbers of the digitsum task: the study's image geometry and defaults. */

/** Height of one composite image in pixels. */
export const IMAGE_HEIGHT = 40;
/** Width of one composite image in pixels. */
export const IMAGE_WIDTH = 168;
/** Pixels in one image. */
export const IMAGE_SIZE = IMAGE_HEIGHT * IMAGE_WIDTH; // 6,720
/** Handwritten digits per composite image. */
export const NUM_DIGITS = 4;
/** Number of possible sums, 0..36. */
export const NUM_SUMS = 9 * NUM_DIGITS + 1; // 37
/** Images in each of the course files data0/1/2.npy. */
export const IMAGES_PER_FILE = 10_000;
/** Fraction of the 30,000 images used for training (the rest is validation). */
export const TRAIN_FRACTION = 0.8;
/** The study's batch size. */
export const BATCH_SIZE = 64;
/** The study's learning rate (Adam). */
export const LEARNING_RATE = 1e-3;
/** The study's number of epochs. */
export const EPOCHS = 15;
/** The study's seeds. */
export const STUDY_SEEDS = [0, 10, 42] as const;
/** Default data directory, relative to the working directory. */
export const DEFAULT_DATA_DIR = "data";
/** Default directory for checkpoints. */
export const DEFAULT_MODELS_DIR = "trained_models";
/** Width in pixels of one output cell of SumNet's digit map (its horizontal stride). */
export const CELL_WIDTH = 8;
/** Cells across a 168 px image. */
export const NUM_CELLS = IMAGE_WIDTH / CELL_WIDTH; // 21
/** Classes per cell: digits 0..9, then "no digit centred here". */
export const NUM_CELL_CLASSES = 11;
/** The class index of "no digit centred in this cell". */
export const NOTHING = 10;
