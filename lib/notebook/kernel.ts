/**
 * The Deno Jupyter kernel, made dependable: rich output ({@link display}), output printed at the
 * end of a cell landing in that cell ({@link installCellEndHook}), and Kernel > Interrupt heard by
 * training cells ({@link listenForInterrupts}, {@link InterruptLatch}). Outside a kernel, display
 * prints a plain-text stand-in, so the same code runs under `deno run` and `deno test`.
 *
 * @module
 */
import { jupyter } from "../runtime/progress.ts";

/**
 * A MIME bundle, e.g. `{ "image/png": base64, "text/plain": "chart" }`: text for most types,
 * a JSON object for JSON types such as {@link PLOTLY_MIME}.
 */
export type MimeBundle = Record<string, string | object>;

/** Options of {@link display}. */
export interface DisplayOptions {
  /** Per-MIME-type metadata, e.g. `{ "image/png": { width: 720, height: 400 } }`. */
  metadata?: Record<string, unknown>;
}

interface KernelWithBroadcast {
  broadcast(
    msgType: string,
    content: Record<string, unknown>,
    extra?: { metadata?: Record<string, unknown> },
  ): Promise<void>;
}

/**
 * Show a MIME bundle in the notebook, or print its `text/plain` part outside one.
 *
 * @param bundle MIME type -> content.
 * @param options Display metadata (sent with `Deno.jupyter.broadcast`, which `display` lacks).
 */
export async function display(bundle: MimeBundle, options: DisplayOptions = {}): Promise<void> {
  const kernel = jupyter();
  if (!kernel) {
    const text = bundle["text/plain"];
    console.log(typeof text === "string" ? text : `[${Object.keys(bundle).join(", ")}]`);
    return;
  }
  installCellEndHook();
  if (options.metadata) {
    await (kernel as unknown as KernelWithBroadcast).broadcast("display_data", {
      data: bundle,
      metadata: options.metadata,
      transient: {},
    });
  } else {
    await kernel.display(bundle, { raw: true });
  }
}

/**
 * How long the kernel's output gets to reach the notebook before a cell is reported finished
 * (30 ms: no output lost in 240 cells executed headless; without it 2-6 of 40-60 were).
 */
export const SETTLE_MS = 30;

export function settle(ms = SETTLE_MS): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type BroadcastResult = ((executionCount: number, result: unknown) => Promise<void>) & {
  [CELL_END_HOOK]?: true;
};

/** Marks the kernel's `broadcastResult` once wrapped (shared by every copy of this module). */
const CELL_END_HOOK = Symbol.for("digitsum.cellEndHook");

/** The Deno kernel's internal Jupyter object, or `undefined` outside a kernel or when renamed. */
function kernelInternals(): { broadcastResult?: BroadcastResult } | undefined {
  const symbol = Object.getOwnPropertySymbols(Deno).find((s) => s.description === "Deno.internal");
  if (!symbol) return undefined;
  const internal = (Deno as unknown as Record<symbol, { jupyter?: unknown } | undefined>)[symbol];
  const internals = internal?.jupyter;
  return internals && typeof internals === "object"
    ? internals as { broadcastResult?: BroadcastResult }
    : undefined;
}

/**
 * Make everything a cell prints land in that cell, without an `await` at the end of each cell.
 *
 * The Deno kernel forwards `console.*` output on a separate task and reports a cell finished 5 ms
 * after its code returns, so the last lines of a cell can arrive after that and show up under the
 * next cell (or get lost when nbconvert stops listening). Before it reports a successful cell
 * finished, the kernel calls its internal `broadcastResult` (which displays the cell's value) and
 * waits for it; this wraps that call to wait {@link SETTLE_MS} first. It is installed once per
 * kernel by the first helper that runs there ({@link notebookSettings}, {@link display}, the
 * training helpers); a cell that ends with an error is not covered (the kernel skips that call),
 * so the helpers that throw settle first.
 *
 * @returns whether the hook is in place (false outside a kernel, or when a Deno release no longer
 *   has `broadcastResult`; then output behaves as before).
 */
export function installCellEndHook(): boolean {
  if (!jupyter()) return false;
  const internals = kernelInternals();
  const original = internals?.broadcastResult;
  if (!internals || typeof original !== "function") return false;
  if (original[CELL_END_HOOK]) return true;
  const wrapped: BroadcastResult = async function (
    this: unknown,
    executionCount: number,
    result: unknown,
  ) {
    await settle();
    return await original.call(this, executionCount, result);
  };
  wrapped[CELL_END_HOOK] = true;
  internals.broadcastResult = wrapped;
  return true;
}

/**
 * The error a training cell ends with when Kernel > Interrupt stopped it (its model and finished
 * epochs are kept: running the cell again resumes), and the error of a training cell that did
 * not start because the kernel was interrupted while the cell waited in the queue.
 */
export class KernelInterrupt extends Error {
  override name = "KernelInterrupt";
  constructor(message: string) {
    super(message);
    this.stack = `${this.name}: ${message}`; // the kernel prints the stack; a trace adds nothing
  }
}

/**
 * What trainings may do after Kernel > Interrupt. The Deno kernel ignores `stop_on_error`, so
 * the cells queued behind an interrupted one still run; a training among them is refused once
 * (with a {@link KernelInterrupt}) instead of starting. Running the interrupted cell again (it
 * resumes) or running a refused cell a second time lifts that.
 */
export class InterruptLatch {
  /** An interrupt arrived that no training has acted on yet. */
  pending = false;
  #latch?: { stopped?: string; refused: Set<string> };

  /** The pending interrupt stopped the training named `key` (or arrived while none ran). */
  stopped(key?: string): void {
    this.pending = false;
    this.#latch = { stopped: key, refused: new Set() };
  }

  /** A training named `key` starts: throws a {@link KernelInterrupt} when it must not. */
  admit(key: string): void {
    if (this.pending) this.stopped(); // interrupted while no training ran
    const latch = this.#latch;
    if (!latch) return;
    if (latch.stopped === key || latch.refused.has(key)) {
      this.#latch = undefined;
      return;
    }
    latch.refused.add(key);
    const resume = latch.stopped ? `run the cell of ${latch.stopped} again to resume it, or ` : "";
    throw new KernelInterrupt(
      `${key} was not started because the kernel was interrupted: ${resume}` +
        `run this cell again to start it.`,
    );
  }
}

/** The kernel's interrupts: whether the SIGINT listener is in place, and the latch. */
export const interrupts = { listening: false, latch: new InterruptLatch() };

/**
 * Let Kernel > Interrupt reach the notebook's training loops. Jupyter interrupts the Deno kernel
 * with SIGINT: its kernelspec names no `interrupt_mode`, so the default (`signal`) applies, and the
 * kernel itself answers an `interrupt_request` only with a log line. The kernel survives SIGINT
 * and runs the cell to its end; with this listener the training helpers see it and stop after the
 * current batch. Installed inside a Deno kernel only: in a terminal, Ctrl-C still ends the
 * process.
 *
 * @returns whether interrupts are heard.
 */
export function listenForInterrupts(): boolean {
  if (interrupts.listening) return true;
  if (!jupyter()) return false;
  try {
    Deno.addSignalListener("SIGINT", () => {
      interrupts.latch.pending = true;
    });
  } catch {
    return false; // a platform without SIGINT listeners
  }
  interrupts.listening = true;
  return true;
}

/**
 * Whether an interrupt asks the running training to stop. It first lets the event loop turn:
 * signal listeners run only then, and a train loop on wasm otherwise awaits nothing but
 * already-settled promises between batches.
 */
export async function interruptRequested(): Promise<boolean> {
  if (!interrupts.listening) return false;
  await new Promise((resolve) => setTimeout(resolve, 0));
  return interrupts.latch.pending;
}
