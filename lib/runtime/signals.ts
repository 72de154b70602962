/**
 * Stopping a long command gently: the first Ctrl-C (or SIGTERM) asks it to stop after the
 * current epoch, a second one exits at once.
 *
 * @module
 */

/**
 * Install the stop handler: the first SIGINT/SIGTERM calls `onStop` and sets the flag, a second
 * one exits with status 130.
 */
export function installStopHandler(onStop: () => void): { stopped: () => boolean } {
  let stop = false;
  const handler = () => {
    if (stop) {
      console.error(
        "\nSecond interrupt: exiting now. The run resumes from its last completed epoch.",
      );
      Deno.exit(130);
    }
    stop = true;
    console.error(
      "\nInterrupt: stopping after the current epoch (its state is saved then). " +
        "Press Ctrl-C again to quit at once.",
    );
    onStop();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, handler);
  return { stopped: () => stop };
}
