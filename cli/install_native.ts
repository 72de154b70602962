/**
 * Opt-in: installs the native TensorFlow backend (`@tensorflow/tfjs-node`, or `-gpu` with
 * `--gpu`) so that `initBackend("auto")` picks it.
 *
 * deno task install-native [--gpu] [--dry-run]
 *
 * The package's install script downloads libtensorflow and a prebuilt addon from Google's
 * storage (or from `TFJS_NODE_CDN_STORAGE` when set). When that fails, deno.json and deno.lock
 * are restored and the half-installed package is unlinked, and the reason is printed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { writeTextAtomic } from "../lib/fsutil.ts";

/** The tfjs-node release matching the project's tfjs. */
const TFJS_NODE_VERSION = "4.22.0";

/** Host the install script downloads from unless `TFJS_NODE_CDN_STORAGE` says otherwise. */
const DEFAULT_STORAGE = "https://storage.googleapis.com/";

function usage(): string {
  return "usage: deno task install-native [--gpu] [--dry-run]";
}

/** Explains an install failure from the install output (exported for tests). */
export function explainFailure(output: string, pkg: string): string {
  const storage = Deno.env.get("TFJS_NODE_CDN_STORAGE") ?? DEFAULT_STORAGE;
  const url = output.match(/https:\/\/\S+\.tar\.gz/)?.[0];
  if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|getaddrinfo|network/i.test(output)) {
    return `${pkg} was fetched from npm, but its install script could not download ` +
      `libtensorflow${url ? ` (${url})` : ""} from ${storage}: this machine cannot reach it. ` +
      "Run this task where that host is reachable, or set TFJS_NODE_CDN_STORAGE to a mirror.";
  }
  if (/failed to run scripts|script 'install'/.test(output)) {
    return `${pkg} was fetched, but its install script failed (output above).`;
  }
  if (/npm|registry/i.test(output)) {
    return `Could not fetch ${pkg}@${TFJS_NODE_VERSION} from the npm registry (output above).`;
  }
  return `deno install failed for ${pkg} (output above).`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      gpu: { type: "boolean", default: false },
      "dry-run": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const pkg = values.gpu ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
  const root = new URL("../", import.meta.url).pathname;
  const command = [
    "install",
    `--allow-scripts=npm:${pkg}`,
    `npm:${pkg}@${TFJS_NODE_VERSION}`,
  ];
  console.log(`$ deno ${command.join(" ")}   (in ${root})`);
  if (values["dry-run"]) return 0;

  const saved: Record<string, string | null> = {};
  for (const name of ["deno.json", "deno.lock"]) {
    try {
      saved[name] = await Deno.readTextFile(`${root}${name}`);
    } catch {
      saved[name] = null;
    }
  }
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: command,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) {
    console.error(output.trim().split("\n").slice(-15).join("\n"));
    for (const [name, text] of Object.entries(saved)) {
      if (text != null) await writeTextAtomic(`${root}${name}`, text);
    }
    const link = `${root}node_modules/${pkg}`;
    try {
      const stat = await Deno.lstat(link);
      await Deno.remove(link, { recursive: !stat.isSymlink });
    } catch {
      // nothing was linked
    }
    console.error(`\ninstall-native: ${explainFailure(output, pkg)}`);
    console.error("deno.json and deno.lock were restored; the wasm backend stays the default.");
    return 1;
  }
  // Check that the backend now loads, in a fresh process.
  const check = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      `${root}deno.json`,
      `import { initBackend } from ${JSON.stringify(`${root}lib/backend.ts`)};` +
      `await initBackend("tensorflow");`,
    ],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (check.code !== 0) {
    console.error(
      `install-native: ${pkg} installed but does not load under Deno (see above; ` +
        "tensorflow/tfjs#8579 describes the addon path workaround).",
    );
    return 1;
  }
  console.log(`install-native: ${pkg} works; \`auto\` now selects the tensorflow backend.`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`install-native: ${error instanceof Error ? error.message : error}`);
    console.error(usage());
    Deno.exit(1);
  }
}
