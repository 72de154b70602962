/**
 * Interactive charts: the Plotly figure type every chart bundle carries, and nodeplotlib's
 * browser window for terminal runs (`DIGITSUM_PLOT=window`), served offline.
 *
 * @module
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Layout, Plot } from "nodeplotlib";
import { jupyter } from "../runtime/progress.ts";
import { PLOT_ENV, readEnv } from "./settings.ts";

/**
 * The MIME type of a Plotly figure. JupyterLab renders it as an interactive chart when Plotly's
 * renderer is installed (the `plotly` pip package bundles it), as does VS Code; other front ends
 * show the PNG of the same bundle.
 */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** A Plotly figure: traces and layout, typed as nodeplotlib's `plot(data, layout)` takes them. */
export interface PlotlyFigure {
  data: Plot[];
  layout?: Layout;
}

/** Whether the interactive window was asked for (env `DIGITSUM_PLOT=window`). */
export function interactiveRequested(env?: Record<string, string | undefined>): boolean {
  const value = readEnv(PLOT_ENV, env);
  if (value === undefined || value === "" || value === "inline") return false;
  if (value === "window") return true;
  throw new Error(`${PLOT_ENV} must be 'window' or 'inline', got '${value}'`);
}

/** nodeplotlib's window, served offline (see {@link showInteractive}). */
export interface InteractiveWindow {
  /** The page to open. */
  url: string;
  /** Resolves when the page was closed and both servers stopped. */
  closed: Promise<void>;
}

let plotWindow: InteractiveWindow | undefined;

/**
 * Open these figures in nodeplotlib's window: only when asked for (`force`, or env
 * `DIGITSUM_PLOT=window`) and not inside a notebook (there the figures are part of each chart's
 * bundle). nodeplotlib serves its page and hands it the figures over socket.io, but the page
 * loads plotly.js from a CDN and its fonts from Google. So the page is served through a small
 * local front server that rewrites the CDN address to plotly.js from the installed npm package
 * (`plotly.js-dist-min`), drops the web fonts, and passes everything else to nodeplotlib: the
 * window works offline. The URL is printed and opened with `xdg-open` (or `open`) when present.
 * Like nodeplotlib, the process stays alive until the page is closed.
 *
 * @returns The window, or `false` when it was not asked for.
 */
export async function showInteractive(
  figures: readonly PlotlyFigure[],
  options: { force?: boolean; open?: boolean } = {},
): Promise<InteractiveWindow | false> {
  if (!options.force && !interactiveRequested()) return false;
  if (jupyter()) {
    throw new Error(
      "showInteractive(): nodeplotlib opens a browser window and cannot draw inside a notebook; " +
        "the charts' bundles carry their Plotly figures there",
    );
  }
  if (!plotWindow) {
    plotWindow = await startPlotWindow(options.open ?? true);
    plotWindow.closed.then(() => plotWindow = undefined);
  }
  const specifier = "nodeplotlib"; // imported on demand: 133 npm packages
  const { plot } = await import(specifier) as typeof import("nodeplotlib");
  for (const figure of figures) plot(figure.data, figure.layout);
  return plotWindow;
}

/** Port nodeplotlib serves on (it reads `NODEPLOTLIB_PORT` when imported). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Files of an installed npm package (installing it on demand), by its `package.json`. */
async function npmPackageDir(name: string, version: string): Promise<string> {
  // A JSON import makes Deno fetch the package into node_modules without running it.
  await import(`npm:${name}@${version}/package.json`, { with: { type: "json" } });
  const require = createRequire(import.meta.url);
  return dirname(require.resolve(`${name}/package.json`));
}

async function startPlotWindow(open: boolean): Promise<InteractiveWindow> {
  const nodeplotlibDir = await npmPackageDir("nodeplotlib", NODEPLOTLIB_VERSION);
  const plotlyDir = await npmPackageDir("plotly.js-dist-min", PLOTLY_JS_VERSION);
  const web = join(nodeplotlibDir, "src", "lib", "server", "web");
  const page = (await Deno.readTextFile(join(web, "index.html")))
    .replace(/https:\/\/cdn\.plot\.ly\/[^"']+/, "/plotly.min.js")
    .replace(/<link rel="preconnect"[^>]*>/g, "")
    .replace(/@font-face\{[^}]*fonts\.gstatic\.com[^}]*\}/g, "");
  const plotly = await Deno.readFile(join(plotlyDir, "plotly.min.js"));
  const backendPort = freePort();
  Deno.env.set("NODEPLOTLIB_PORT", String(backendPort)); // also keeps it from opening a window
  const backend = `http://127.0.0.1:${backendPort}`;
  let lastRequest = Date.now();
  let served = false;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      lastRequest = Date.now();
      const url = new URL(request.url);
      if (url.pathname === "/" || url.pathname === "/index.html") {
        served = true;
        return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
      }
      if (url.pathname === "/plotly.min.js") {
        return new Response(plotly, { headers: { "content-type": "text/javascript" } });
      }
      try {
        return await fetch(backend + url.pathname + url.search, {
          method: request.method,
          headers: request.headers,
          body: request.body,
          redirect: "manual",
        });
      } catch {
        return new Response("nodeplotlib has stopped", { status: 502 });
      }
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/`;
  // nodeplotlib stops when its page disconnects; stop the front server with it.
  const watcher = setInterval(async () => {
    if (!served || Date.now() - lastRequest < WINDOW_IDLE_MS) return;
    const alive = await fetch(`${backend}/socket.io/?EIO=4&transport=polling`)
      .then((r) => r.body?.cancel().then(() => true) ?? true, () => false);
    if (!alive) {
      clearInterval(watcher);
      await server.shutdown();
    }
  }, WINDOW_IDLE_MS);
  console.log(`Interactive charts (nodeplotlib, offline): ${url} (close the page to end)`);
  if (open) openBrowser(url);
  return { url, closed: server.finished };
}

/** How often the window's front server checks whether nodeplotlib is still running. */
const WINDOW_IDLE_MS = 1000;

/** The versions `deno.json` maps `nodeplotlib` and `plotly.js-dist-min` to. */
const NODEPLOTLIB_VERSION = "1.1.2";

const PLOTLY_JS_VERSION = "4.1.2";

function openBrowser(url: string): void {
  const command = Deno.build.os === "darwin" ? "open" : "xdg-open";
  try {
    new Deno.Command(command, { args: [url], stdout: "null", stderr: "null" }).spawn();
  } catch {
    // no desktop opener: the URL is printed
  }
}

// Error analysis
