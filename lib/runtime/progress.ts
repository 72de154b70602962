/**
 * Progress for long work: an in-place bar with ETA on a terminal, a line every few percent when
 * piped (CI logs), and a live-updating line in a Jupyter notebook (the Deno kernel drops stderr
 * and `process.stdout.write`, so notebooks get `Deno.jupyter.display` updates instead).
 */

/** The Deno Jupyter API when running inside `deno jupyter`, else `undefined`. */
export function jupyter():
  | {
    display(
      obj: unknown,
      options?: { raw?: boolean; display_id?: string; update?: boolean },
    ): Promise<void>;
  }
  | undefined {
  try {
    // deno-lint-ignore no-explicit-any
    return (Deno as any).jupyter;
  } catch {
    return undefined; // outside the kernel, touching Deno.jupyter throws
  }
}

/** Format seconds as `1h02m`, `3m05s` or `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** Options of {@link ProgressBar}. */
export interface ProgressOptions {
  /** Text before the bar. */
  label?: string;
  /** Bar width in characters (default 28). */
  width?: number;
  /** Where to draw: auto-detected by default. `none` draws nothing. */
  mode?: "auto" | "tty" | "lines" | "jupyter" | "none";
  /** Minimum seconds between two redraws (default 0.2; 0.5 in notebooks; 30 for lines). */
  interval?: number;
}

const encoder = new TextEncoder();
let displayCounter = 0;

/** A progress bar with ETA. */
export class ProgressBar {
  readonly mode: "tty" | "lines" | "jupyter" | "none";
  #start = performance.now();
  #last = -Infinity;
  #lastPercent = -1;
  #id = `digitsum-progress-${Date.now()}-${displayCounter++}`;
  #shown = false;
  #text = "";

  /** @param total the number of steps that make 100%. */
  constructor(public total: number, readonly options: ProgressOptions = {}) {
    const mode = options.mode ?? "auto";
    if (mode !== "auto") this.mode = mode;
    else if (jupyter()) this.mode = "jupyter";
    else if (Deno.stderr.isTerminal()) this.mode = "tty";
    else this.mode = "lines";
  }

  /** The current line (also what a notebook shows). */
  render(done: number, suffix = ""): string {
    const width = this.options.width ?? 28;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const filled = Math.round(fraction * width);
    const elapsed = (performance.now() - this.#start) / 1000;
    const eta = done > 0 ? elapsed * (this.total - done) / done : NaN;
    const label = this.options.label ? `${this.options.label} ` : "";
    return `${label}[${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
      `${(fraction * 100).toFixed(0).padStart(3)}% ${done}/${this.total} ` +
      `${formatDuration(elapsed)}<${formatDuration(eta)}${suffix ? " " + suffix : ""}`;
  }

  /** Record progress; redraws at most every `interval` seconds. */
  async update(done: number, suffix = ""): Promise<void> {
    if (this.mode === "none") return;
    const now = performance.now();
    const interval = this.options.interval ??
      (this.mode === "jupyter" ? 0.5 : this.mode === "lines" ? 30 : 0.2);
    const percent = this.total > 0 ? Math.floor((done / this.total) * 10) : 10;
    const due = (now - this.#last) / 1000 >= interval ||
      (this.mode === "lines" && percent > this.#lastPercent);
    if (!due && done < this.total) return;
    this.#last = now;
    this.#lastPercent = percent;
    await this.#draw(this.render(done, suffix));
  }

  /** Replace the bar with a final message (or leave the last state when none is given). */
  async finish(message?: string): Promise<void> {
    if (this.mode === "none") return;
    if (this.mode === "tty") {
      Deno.stderr.writeSync(
        encoder.encode(`\r\x1b[2K${message ? message + "\n" : this.#text + "\n"}`),
      );
    } else if (this.mode === "jupyter") {
      if (message) await this.#draw(message);
    } else if (message) console.error(message);
  }

  async #draw(text: string): Promise<void> {
    this.#text = text;
    if (this.mode === "tty") {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${text}`));
    } else if (this.mode === "lines") {
      console.error(text);
    } else if (this.mode === "jupyter") {
      await jupyter()!.display({ "text/plain": text }, {
        raw: true,
        display_id: this.#id,
        update: this.#shown,
      });
      this.#shown = true;
    }
  }
}

/** Progress of one training batch, for callbacks. */
export interface BatchProgress {
  epoch: number;
  epochs: number;
  batch: number;
  numBatches: number;
  loss: number;
  /** Seconds since the epoch started. */
  elapsed: number;
}

/**
 * A train loop's `onBatchEnd` callback drawing one progress bar per epoch: a live-updating line
 * in a notebook, a bar on a terminal, a line every few percent when piped.
 */
export function epochProgress(): (progress: BatchProgress) => Promise<void> {
  let bar: ProgressBar | undefined;
  return async (p) => {
    bar ??= new ProgressBar(p.numBatches, { label: `epoch ${p.epoch}/${p.epochs}` });
    await bar.update(p.batch, `loss ${p.loss.toFixed(3)}`);
    if (p.batch === p.numBatches) {
      await bar.finish();
      bar = undefined;
    }
  };
}
