/**
 * Stopping a long command gently: the first Ctrl-C (or SIGTERM) asks it to stop after the
 * current epoch; a second Ctrl-C exits at once, a repeated SIGTERM is ignored.
 *
 * @module
 */

/**
 * Signals closer together than this are one interrupt that arrived twice: `deno task sweep`
 * forwards to the sweep the signal that the terminal (Ctrl-C signals the whole process group) or
 * SLURM (requeue, scancel and time limits signal every process of a job) also sends it directly.
 */
export const REPEAT_WINDOW_MS = 1000;

/** Options of {@link interruptHandler}; the defaults are the process's own. */
export interface InterruptOptions {
  /** Exits the process (default `Deno.exit`). */
  exit?: (code: number) => void;
  /** Milliseconds on a monotonic clock (default `performance.now`). */
  now?: () => number;
  /** Where the messages go (default `console.error`). */
  log?: (line: string) => void;
}

/**
 * What the sweep does with SIGINT and SIGTERM. The first one calls `onStop` (the sweep stops after
 * the current epoch, once its state is saved). Another Ctrl-C (SIGINT) more than
 * {@link REPEAT_WINDOW_MS} later exits at once. Further SIGTERMs are ignored: whoever sends SIGTERM
 * (SLURM, systemd, `docker stop`) sends SIGKILL when it stops waiting, and SLURM's SIGTERM reaches
 * a sweep started by `deno task` twice.
 *
 * @returns The listener, called with the signal that arrived.
 */
export function interruptHandler(
  onStop: () => void,
  options: InterruptOptions = {},
): (signal: Deno.Signal) => void {
  const exit = options.exit ?? ((code: number) => Deno.exit(code));
  const now = options.now ?? (() => performance.now());
  const log = options.log ?? console.error;
  let first: number | undefined;
  return (signal) => {
    if (first === undefined) {
      first = now();
      log(
        signal === "SIGTERM"
          ? "\nSIGTERM: stopping after the current epoch (its state is saved then)."
          : "\nInterrupt: stopping after the current epoch (its state is saved then). " +
            "Press Ctrl-C again to quit at once.",
      );
      onStop();
      return;
    }
    if (signal !== "SIGINT" || now() - first < REPEAT_WINDOW_MS) return;
    log("\nSecond interrupt: exiting now. The run resumes from its last completed epoch.");
    exit(130);
  };
}

/**
 * Install the stop handler for SIGINT and SIGTERM (see {@link interruptHandler}): the first one
 * calls `onStop` and sets the flag.
 */
export function installStopHandler(onStop: () => void): { stopped: () => boolean } {
  let stop = false;
  const handler = interruptHandler(() => {
    stop = true;
    onStop();
  });
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => handler(signal));
  return { stopped: () => stop };
}
