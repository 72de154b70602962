/** The one way digitsum's command-line scripts start and end. */

/**
 * Run a CLI's `main`, exit with its status (0 when it returns nothing) and turn an error into
 * one line, `<name>: <message>`, and exit status 1. Exiting explicitly also ends wasm worker
 * threads and open handles, so a finished command never hangs.
 */
export async function runMain(
  name: string,
  main: () => Promise<number | void>,
): Promise<never> {
  try {
    const status = await main();
    Deno.exit(typeof status === "number" ? status : 0);
  } catch (error) {
    console.error(`${name}: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
