/**
 * `deno task web [--port 8318] [--host 127.0.0.1] [--out web/dist] [--build-only | --no-build]`
 *
 * Builds the browser page (`web/build.ts`: the page's code and its TensorFlow.js reader bundled by
 * `deno bundle`, the shipped SumNet, TensorFlow.js' wasm files and some test composites) and
 * serves it on this machine, printing its address. Needs no network: everything comes from the
 * repository and the installed npm packages. `--build-only` just builds the folder, ready for any
 * static host (for example GitHub Pages).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runMain } from "../lib/cli/args.ts";
import { exists } from "../lib/io/fsutil.ts";
import { BUILD_DEFAULTS, buildSite } from "../web/build.ts";
import { SERVE_DEFAULTS, serveSite } from "../web/serve.ts";

const USAGE = `Usage: deno task web [options]

  --port N        port to serve on (default ${SERVE_DEFAULTS.port}; 0: any free port)
  --host ADDR     address to listen on (default ${SERVE_DEFAULTS.hostname})
  --out DIR       build folder (default web/dist)
  --model DIR     checkpoint the page uses (default trained_models/sumnet)
  --build-only    build the folder for a static host and exit
  --no-build      serve the folder as it is
`;

/** Parses a port number. */
function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be an integer 0..65535, got '${value}'`);
  }
  return port;
}

async function main(): Promise<number | void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      host: { type: "string" },
      out: { type: "string" },
      model: { type: "string" },
      "build-only": { type: "boolean" },
      "no-build": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values["build-only"] && values["no-build"]) {
    throw new Error("--build-only and --no-build exclude each other");
  }
  const outDir = values.out ?? BUILD_DEFAULTS.outDir;
  const port = values.port === undefined ? SERVE_DEFAULTS.port : parsePort(values.port);
  if (!values["no-build"]) {
    const report = await buildSite({
      outDir,
      modelDir: values.model ?? BUILD_DEFAULTS.modelDir,
      log: (line) => console.log(line),
    });
    const kib = (name: string) => `${(report.files[name] / 1024).toFixed(0)} KiB`;
    console.log(
      `main.js ${kib("main.js")}, worker.js ${kib("worker.js")}, model ${
        kib("model/weights.bin")
      }, ` +
        `test composites ${kib("samples/test_composites.png")}`,
    );
  } else if (!await exists(outDir)) {
    throw new Error(`Cannot serve ${outDir}: it does not exist (run without --no-build)`);
  }
  if (values["build-only"]) return 0;
  const { server } = serveSite(outDir, {
    hostname: values.host ?? SERVE_DEFAULTS.hostname,
    port,
    onListen: (url) => console.log(`Serving the page at ${url} (Ctrl+C to stop)`),
  });
  await server.finished;
}

if (import.meta.main) await runMain("web", main);
