/// <reference lib="dom" />
/**
 * The browser page: draw four digits (or drop an image, or pick a test composite) and watch
 * SumNet read them. Bundled by `web/build.ts` into `main.js`; everything it needs (TensorFlow.js,
 * its wasm files, the model, the test composites) is served beside it, so it works offline and
 * from any static host.
 *
 * SumNet runs in a Web Worker (`web/worker.ts`) with the library's own custom layers and read-out
 * (`lib/models/sumnet/core.ts`); a dropped image goes through `deno task predict`'s conversion
 * (`lib/data/image_input.ts`), a drawing through `lib/data/drawing.ts`.
 *
 * @module
 */
import { IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, NUM_DIGITS } from "../lib/constants.ts";
import { drawingToModelImage, type Stroke, type StrokeGroup } from "../lib/data/drawing.ts";
import { decodedToModelImage, type ModelImage, pngToModelImage } from "../lib/data/image_input.ts";
import { decodePng, pngToGray } from "../lib/io/png.ts";
import type { Explanation } from "../lib/models/sumnet/core.ts";
import { digitsSeen } from "../lib/models/sumnet/seen.ts";
import type { WorkerReply, WorkerRequest } from "./protocol.ts";
import type { SampleInfo } from "./samples.ts";

/** Where the page finds its files, relative to itself. */
const PATHS = {
  model: "model/model.json",
  wasm: "wasm/",
  worker: "worker.js",
  samples: "samples/test_composites.png",
  sampleInfo: "samples/test_composites.json",
};
/** Backends tried in order unless `?backend=` names others (comma-separated). */
const DEFAULT_BACKENDS = ["wasm", "webgl", "cpu"];
/** Drawing pen on screen, in model pixels (display only: the model's input is redrawn). */
const SCREEN_PEN = 2.2;
/** Shortest time between the starts of two readings while a stroke is drawn, ms. */
const LIVE_INTERVAL_MS = 120;
/** Sums shown in the bar chart. */
const CHART_SUMS = 5;

/** The page's state. */
interface State {
  reader: Reader;
  /** A message about the last failed action (a file that could not be used). */
  error: string | null;
  /** Strokes drawn, in model pixels. */
  strokes: Stroke[];
  /** The stroke being drawn (also in `strokes`), and its pointer. */
  active: { stroke: Stroke; pointer: number } | null;
  /** An image shown instead of a drawing (dropped, or a test composite). */
  image: { pixels: Uint8Array; caption: string; notes: string[] } | null;
  samples: { pixels: Uint8Array; info: SampleInfo } | null;
  readings: number;
  lastMs: number;
}

/** The page's elements. */
function elements() {
  const get = <T extends HTMLElement>(id: string) => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`page is missing #${id}`);
    return el as T;
  };
  return {
    pad: get<HTMLCanvasElement>("pad"),
    frame: get<HTMLDivElement>("pad-frame"),
    digits: get<HTMLDivElement>("digits"),
    sum: get<HTMLDivElement>("sum"),
    sumP: get<HTMLDivElement>("sum-p"),
    chart: get<HTMLDivElement>("chart"),
    seen: get<HTMLCanvasElement>("seen"),
    notes: get<HTMLUListElement>("notes"),
    caption: get<HTMLParagraphElement>("caption"),
    info: get<HTMLSpanElement>("info"),
    undo: get<HTMLButtonElement>("undo"),
    clear: get<HTMLButtonElement>("clear"),
    random: get<HTMLButtonElement>("random"),
    file: get<HTMLInputElement>("file"),
  };
}
type Elements = ReturnType<typeof elements>;

/** SumNet in a Web Worker: one reading at a time. */
interface Reader {
  /** Backend and TensorFlow.js version. */
  backend: string;
  tfjs: string;
  /** Reads a 40 x 168 image: the explanation and the worker's time for it, ms. */
  read(pixels: Uint8Array): Promise<{ explanation: Explanation; ms: number }>;
}

/** Starts the reader (`worker.js`): backend, model, warm-up. */
function startReader(backends: string[]): Promise<Reader> {
  const url = (path: string) => new URL(path, document.baseURI).href;
  const worker = new Worker(url(PATHS.worker), { type: "module" });
  const waiting = new Map<number, (reply: WorkerReply) => void>();
  let nextId = 1;
  const send = (request: WorkerRequest) => worker.postMessage(request);
  const read: Reader["read"] = (pixels) =>
    new Promise((done, fail) => {
      const id = nextId++;
      waiting.set(id, (answer) => {
        if (answer.type === "reading") done(answer);
        else fail(new Error(answer.type === "error" ? answer.message : "unexpected reply"));
      });
      send({ type: "read", id, pixels });
    });
  return new Promise((resolve, reject) => {
    worker.onerror = (event) => {
      const error = new Error(`SumNet's worker failed: ${event.message}`);
      reject(error); // before it was ready; afterwards, the readings waiting fail
      for (const fail of waiting.values()) fail({ type: "error", message: error.message });
      waiting.clear();
    };
    worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      if (reply.type === "ready") {
        resolve({ backend: reply.backend, tfjs: reply.tfjs, read });
      } else if (reply.id === undefined) {
        reject(new Error(reply.type === "error" ? reply.message : "a reading without an id"));
      } else {
        waiting.get(reply.id)?.(reply);
        waiting.delete(reply.id);
      }
    };
    send({ type: "init", backends, modelUrl: url(PATHS.model), wasmUrl: url(PATHS.wasm) });
  });
}

/** Loads the stacked test composites, or null when the asset is absent. */
async function loadSamples(): Promise<State["samples"]> {
  const [png, json] = await Promise.all([fetch(PATHS.samples), fetch(PATHS.sampleInfo)]);
  if (!png.ok || !json.ok) return null;
  const info = await json.json() as SampleInfo;
  const image = await decodePng(new Uint8Array(await png.arrayBuffer()), PATHS.samples);
  const pixels = pngToGray(image);
  if (image.width !== IMAGE_WIDTH || pixels.length !== info.count * IMAGE_SIZE) {
    throw new Error(`${PATHS.samples}: expected ${info.count} images of 40 x 168`);
  }
  return { pixels, info };
}

/** Model pixels of a pointer event on the pad. */
function padPoint(pad: HTMLCanvasElement, event: PointerEvent): { x: number; y: number } {
  const rect = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) / rect.width) * IMAGE_WIDTH,
    y: ((event.clientY - rect.top) / rect.height) * IMAGE_HEIGHT,
  };
}

/** Draws a 40 x 168 gray image into a canvas (scaled to its backing size). */
function paintImage(canvas: HTMLCanvasElement, pixels: Uint8Array): void {
  const small = new ImageData(IMAGE_WIDTH, IMAGE_HEIGHT);
  for (let i = 0; i < IMAGE_SIZE; i++) {
    small.data.set([pixels[i], pixels[i], pixels[i], 255], 4 * i);
  }
  const ctx = canvas.getContext("2d")!;
  if (canvas.width === IMAGE_WIDTH && canvas.height === IMAGE_HEIGHT) {
    ctx.putImageData(small, 0, 0);
    return;
  }
  const scratch = document.createElement("canvas");
  scratch.width = IMAGE_WIDTH;
  scratch.height = IMAGE_HEIGHT;
  scratch.getContext("2d")!.putImageData(small, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}

/** Redraws the pad: the image, or the strokes in white on black. */
function paintPad(el: Elements, state: State): void {
  const { pad } = el;
  const rect = pad.getBoundingClientRect();
  const ratio = globalThis.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(rect.width * ratio));
  const height = Math.max(1, Math.round(rect.height * ratio));
  if (pad.width !== width || pad.height !== height) {
    pad.width = width;
    pad.height = height;
  }
  const ctx = pad.getContext("2d")!;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, height);
  if (state.image) paintImage(pad, state.image.pixels);
  const scale = width / IMAGE_WIDTH;
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = SCREEN_PEN * scale;
  for (const stroke of state.strokes) {
    ctx.beginPath();
    stroke.forEach((p, i) =>
      (i === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, p.x * scale, p.y * scale)
    );
    if (stroke.length === 1) {
      ctx.arc(stroke[0].x * scale, stroke[0].y * scale, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.stroke();
    }
  }
  document.body.dataset.empty = state.strokes.length === 0 && !state.image ? "1" : "0";
}

/** The model's input for what is on the pad, with the stroke groups of a drawing. */
function currentInput(state: State): { pixels: Uint8Array; groups: StrokeGroup[] } | null {
  if (state.strokes.length > 0) {
    const drawn = drawingToModelImage(state.strokes);
    return drawn.groups.length > 0 ? drawn : null;
  }
  return state.image ? { pixels: state.image.pixels, groups: [] } : null;
}

/** Where (model pixels on the pad) a digit read at model column `centre` was drawn. */
function padColumn(centre: number, groups: StrokeGroup[]): number {
  if (groups.length === 0) return centre;
  let best = groups[0];
  let distance = Infinity;
  for (const g of groups) {
    const d = centre < g.placed.left
      ? g.placed.left - centre
      : Math.max(0, centre - g.placed.right);
    if (d < distance) {
      distance = d;
      best = g;
    }
  }
  const x = (centre - best.dx) / best.scale;
  return Math.min(best.box.right, Math.max(best.box.left, x));
}

/** Shows a reading (or the empty state when `explanation` is null). */
function showReading(
  el: Elements,
  explanation: Explanation | null,
  context: { groups: StrokeGroup[]; notes: string[] },
): void {
  el.digits.replaceChildren();
  el.chart.replaceChildren();
  const notes = [...context.notes];
  if (!explanation) {
    el.sum.textContent = "–";
    el.sumP.textContent = "";
    el.sum.dataset.sum = "";
    el.digits.dataset.digits = "";
  } else {
    el.sum.textContent = String(explanation.sum);
    el.sum.dataset.sum = String(explanation.sum);
    el.sumP.textContent = `p ${explanation.sumProbability.toFixed(3)}`;
    el.digits.dataset.digits = explanation.digits.map((d) => d.digit).join(",");
    for (const d of explanation.digits) {
      const x = padColumn(d.centre, context.groups);
      const div = document.createElement("div");
      div.className = "digit";
      div.style.left = `${(100 * x) / IMAGE_WIDTH}%`;
      div.title = `columns ${d.columns[0]}-${d.columns[1] - 1} of what SumNet reads`;
      const b = document.createElement("b");
      b.textContent = String(d.digit);
      const small = document.createElement("small");
      small.textContent = d.probability.toFixed(2);
      div.append(b, small);
      el.digits.append(div);
    }
    const order = [...explanation.sumDistribution.keys()]
      .sort((a, b) => explanation.sumDistribution[b] - explanation.sumDistribution[a])
      .slice(0, CHART_SUMS);
    const top = explanation.sumDistribution[order[0]];
    order.forEach((s, rank) => {
      const p = explanation.sumDistribution[s];
      const row = document.createElement("div");
      row.className = rank === 0 ? "bar" : "bar second";
      const label = document.createElement("span");
      label.textContent = String(s);
      const bar = document.createElement("span");
      bar.style.width = `${Math.max(1, (100 * p) / top)}%`;
      const value = document.createElement("span");
      value.textContent = `${(100 * p).toFixed(1)}%`;
      row.append(label, bar, value);
      el.chart.append(row);
    });
    // What the model did to the image before reading it (never to a drawing made here).
    if (explanation.prepared?.cleaned) {
      notes.unshift("The image looks noisy, so SumNet kept only its ink before reading it.");
    }
    if (explanation.prepared && explanation.prepared.scale !== 1) {
      notes.unshift(
        `The digits are unusually ${explanation.prepared.scale > 1 ? "small" : "large"}, ` +
          `so SumNet scaled the image ${explanation.prepared.scale.toFixed(2)}x before reading it.`,
      );
    }
    // A drawing's digits are its stroke groups (exact unless digits touch); an image's are
    // what SumNet sees centred in its cells.
    const drawn = context.groups.length;
    const seen = drawn > 0 ? drawn : Math.round(digitsSeen(explanation));
    if (seen !== NUM_DIGITS) {
      notes.unshift(
        `SumNet expects exactly four digits; ` +
          (drawn > 0
            ? `this drawing has ${seen} (digits that touch count as one).`
            : `it sees about ${seen}.`) +
          ` The sum assumes four.`,
      );
    }
  }
  el.notes.replaceChildren(
    ...notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })),
  );
}

/** Reads what is on the pad and shows it. */
async function update(el: Elements, state: State): Promise<void> {
  const input = currentInput(state);
  // How much of the drawing this reading covers (for tests: strokes and points so far).
  const points = String(state.strokes.reduce((n, stroke) => n + stroke.length, 0));
  const notes = state.strokes.length === 0 && state.image ? [...state.image.notes] : [];
  if (state.error) notes.unshift(state.error);
  el.caption.textContent = state.strokes.length === 0 && state.image ? state.image.caption : "";
  if (!input) {
    paintImage(el.seen, new Uint8Array(IMAGE_SIZE));
    showReading(el, null, { groups: [], notes });
    return;
  }
  paintImage(el.seen, input.pixels);
  const { explanation, ms } = await state.reader.read(input.pixels);
  state.lastMs = ms;
  state.readings++;
  document.body.dataset.readings = String(state.readings);
  document.body.dataset.readPoints = points;
  document.body.dataset.lastMs = state.lastMs.toFixed(1);
  el.info.dataset.reading = `, ${state.lastMs.toFixed(0)} ms per reading`;
  showReading(el, explanation, { groups: input.groups, notes });
}

/**
 * Runs `update` after changes, one at a time, catching up with changes made meanwhile. While a
 * stroke is being drawn, readings start at most every {@linkcode LIVE_INTERVAL_MS}; any other
 * change (a finished stroke, a button) is read at once. `<body data-busy>` is 1 until the
 * reading of the latest change is shown.
 *
 * @returns `schedule()`: call it after every change
 */
function scheduler(el: Elements, state: State): () => void {
  let running = false;
  let again = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastStart = -Infinity;
  const wait = () => (state.active ? lastStart + LIVE_INTERVAL_MS - performance.now() : 0);
  const run = async () => {
    timer = undefined;
    running = true;
    try {
      do {
        again = false;
        lastStart = performance.now();
        await update(el, state);
      } while (again && wait() <= 0);
    } catch (error) {
      el.notes.replaceChildren(
        Object.assign(document.createElement("li"), { textContent: (error as Error).message }),
      );
    } finally {
      running = false;
    }
    if (again) {
      timer = setTimeout(run, Math.max(0, wait()));
    } else {
      document.body.dataset.busy = "0";
    }
  };
  return () => {
    paintPad(el, state);
    document.body.dataset.busy = "1";
    if (running) {
      again = true;
    } else if (timer === undefined || wait() <= 0) {
      clearTimeout(timer);
      timer = setTimeout(run, Math.max(0, wait()));
    }
  };
}

/** Converts a dropped or opened file to the model's input, as `deno task predict` does. */
async function fileToModelImage(file: File): Promise<ModelImage> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const isPng = bytes.length > 8 && bytes[0] === 0x89 && bytes[1] === 0x50;
  if (isPng) return await pngToModelImage(bytes, file.name);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`Cannot read ${file.name}: not an image this browser can decode`);
  }
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d")!;
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return decodedToModelImage(
    { width: bitmap.width, height: bitmap.height, channels: 4, data: new Uint8Array(data.buffer) },
    file.name,
  );
}

/** Wires the pad, the buttons and drag-and-drop. */
function wire(el: Elements, state: State): void {
  const read = scheduler(el, state);
  /** After a change: forget an earlier error (or show a new one) and read again. */
  const schedule = (error: string | null = null) => {
    state.error = error;
    read();
  };
  const { pad, frame } = el;
  pad.addEventListener("pointerdown", (event) => {
    if (state.active || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    if (state.image) state.image = null; // drawing starts over on a shown image
    const stroke: Stroke = [padPoint(pad, event)];
    state.strokes.push(stroke);
    state.active = { stroke, pointer: event.pointerId };
    schedule();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!state.active || state.active.pointer !== event.pointerId) return;
    const events = event.getCoalescedEvents?.() ?? [event];
    for (const e of events.length > 0 ? events : [event]) {
      state.active.stroke.push(padPoint(pad, e));
    }
    schedule();
  });
  const end = (event: PointerEvent) => {
    if (!state.active || state.active.pointer !== event.pointerId) return;
    state.active = null;
    schedule();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  const undo = () => {
    if (state.strokes.length > 0) state.strokes.pop();
    else state.image = null;
    state.active = null;
    schedule();
  };
  const clear = () => {
    state.strokes = [];
    state.image = null;
    state.active = null;
    schedule();
  };
  el.undo.addEventListener("click", undo);
  el.clear.addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") undo();
    else if (event.key === "Escape") clear();
  });
  el.random.addEventListener("click", () => {
    if (!state.samples) return;
    const { info, pixels } = state.samples;
    const i = Math.floor(Math.random() * info.count);
    state.strokes = [];
    state.image = {
      pixels: pixels.slice(i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE),
      caption: `MNIST test composite #${i}: true sum ${info.labels[i]} ` +
        `(${info.digits[i].join(" + ")})`,
      notes: [],
    };
    document.body.dataset.trueSum = String(info.labels[i]);
    schedule();
  });
  const open = async (file: File | undefined) => {
    if (!file) return;
    try {
      const { pixels, notes } = await fileToModelImage(file);
      state.strokes = [];
      state.image = { pixels, caption: file.name, notes };
    } catch (error) {
      state.strokes = [];
      state.image = null;
      schedule((error as Error).message);
      return;
    }
    schedule();
  };
  el.file.addEventListener("change", () => {
    void open(el.file.files?.[0]);
    el.file.value = ""; // the same file again is a change too
  });
  frame.addEventListener("dragover", (event) => {
    event.preventDefault();
    frame.classList.add("dragging");
  });
  frame.addEventListener("dragleave", () => frame.classList.remove("dragging"));
  frame.addEventListener("drop", (event) => {
    event.preventDefault();
    frame.classList.remove("dragging");
    void open(event.dataTransfer?.files?.[0]);
  });
  new ResizeObserver(() => paintPad(el, state)).observe(pad);
  schedule();
}

/**
 * Starts the page: backend, model (warmed up with one reading), test composites, then the pad.
 * Sets `data-state` on `<body>` to `ready` when done (`error` on failure) and `data-load-ms` to
 * the time since navigation started.
 */
export async function start(): Promise<void> {
  const el = elements();
  try {
    const wanted = new URLSearchParams(location.search).get("backend");
    const [reader, samples] = await Promise.all([
      startReader(wanted ? wanted.split(",") : DEFAULT_BACKENDS),
      loadSamples(),
    ]);
    const state: State = {
      reader,
      error: null,
      strokes: [],
      active: null,
      image: null,
      samples,
      readings: 0,
      lastMs: 0,
    };
    const loadMs = performance.now();
    document.body.dataset.backend = reader.backend;
    document.body.dataset.loadMs = loadMs.toFixed(0);
    el.info.textContent = `SumNet on TensorFlow.js ${reader.tfjs} (${reader.backend}), ready ` +
      `in ${(loadMs / 1000).toFixed(1)} s`;
    el.random.disabled = samples === null;
    wire(el, state);
    document.body.dataset.state = "ready";
  } catch (error) {
    document.body.dataset.state = "error";
    el.info.textContent = `Cannot start: ${(error as Error).message}`;
    throw error;
  }
}
