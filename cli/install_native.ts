/**
 * Installs the native TensorFlow backend so that `initBackend("auto")` picks it: the N-API addon
 * of `@tensorflow/tfjs-node` (listed in deno.json) built against a TensorFlow C library, with no
 * internet needed when one can be found (lib/runtime/native_install.ts).
 *
 * deno task install-native [--from WHEEL|DIR|TARBALL] [--tf-version 2.21.0] [--gpu] [--force]
 *
 * Where the library comes from, first match wins: `--from`; the TensorFlow that `python3` has
 * installed; `pip download tensorflow-cpu==<version> --no-deps` from pip's configured index;
 * last, the package's own install script (downloads from Google's storage). Any failure leaves
 * the wasm backend as the default and says what to do.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runMain } from "../lib/cli/args.ts";
import {
  DEFAULT_TF_VERSION,
  describeSource,
  installNative,
  nativePackageDir,
  runPackageInstallScript,
  uninstallNative,
} from "../lib/runtime/native_install.ts";

function usage(): string {
  return "usage: deno task install-native [--from WHEEL|DIR|TARBALL] [--tf-version VERSION] " +
    "[--gpu] [--force]";
}

/** Loads the backend in a fresh process; returns its `Backend: ...` line or throws. */
async function checkLoads(root: string): Promise<string> {
  const code = `import { initBackend } from ${JSON.stringify(`${root}lib/runtime/backend.ts`)};` +
    `import * as tf from "@tensorflow/tfjs";` +
    `await initBackend("tensorflow", { quiet: true }).then((info) => {` +
    `const y = tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync();` +
    `if (y[0] !== 3) throw new Error("matMul gave " + y[0]);` +
    `console.log("Backend: tensorflow, TensorFlow " + info.versions.libtensorflow); });` +
    `Deno.exit(0);`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", `${root}deno.json`, code],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`the backend does not load:\n${text.trim()}`);
  return text.trim().split("\n").pop()!;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      from: { type: "string" },
      "tf-version": { type: "string", default: DEFAULT_TF_VERSION },
      gpu: { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const root = new URL("../", import.meta.url).pathname;
  const pkg = values.gpu ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
  try {
    const result = await installNative({
      from: values.from,
      gpu: values.gpu,
      tfVersion: values["tf-version"],
      force: values.force,
    });
    console.log(await checkLoads(root));
    console.log(
      `install-native: ${pkg} works with TensorFlow ${result.library.version} from ` +
        `${describeSource(result.source)}; addon ${result.built ? "built" : "reused"}; ` +
        `${result.seconds.toFixed(1)} s. \`auto\` now selects the tensorflow backend.`,
    );
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`install-native: ${message}`);
    if (values.from) return fail(pkg, root);
  }
  // Last resort: the package's own download.
  let packageDir: string;
  try {
    packageDir = nativePackageDir(pkg, root);
  } catch (error) {
    console.error(`install-native: ${error instanceof Error ? error.message : error}`);
    return fail(pkg, root);
  }
  console.log(`install-native: trying ${describeSource("package-download")}...`);
  try {
    await runPackageInstallScript(packageDir);
    console.log(await checkLoads(root));
    console.log(`install-native: ${pkg} works (${describeSource("package-download")}).`);
    return 0;
  } catch (error) {
    console.error(`install-native: ${error instanceof Error ? error.message : error}`);
    await uninstallNative(packageDir);
    return fail(pkg, root);
  }
}

function fail(pkg: string, root: string): number {
  console.error(
    `install-native: ${pkg} is not usable; the wasm backend stays the default.\n` +
      "  To fix: pass a TensorFlow wheel, folder or libtensorflow tarball with --from, or make " +
      "`pip download tensorflow-cpu==" + DEFAULT_TF_VERSION + " --no-deps` work " +
      `(pip's index settings), then run \`deno task install-native\` again in ${root}.`,
  );
  return 1;
}

if (import.meta.main) runMain("install-native", main);
