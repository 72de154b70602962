/**
 * JupyterLab for digitsum's browser test (and for looking at the notebooks by hand): finds
 * JupyterLab 4 (a venv made by `.ci/run`, or `jupyter` on PATH), makes a scratch copy of the
 * repository's layout in which saving a notebook changes nothing in the repository, and starts
 * `jupyter lab` on 127.0.0.1 with a token and config, settings and workspaces of its own.
 *
 *   deno run -A tools/jupyterlab.ts [--quick] [--no-plotly] [--port N]
 *
 * prints the URL and serves until Ctrl-C.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../lib/notebook/mod.ts";

/** Where `.ci/run` installs JupyterLab 4.6.4 and plotly (a venv); env `DIGITSUM_JUPYTERLAB_VENV`. */
export const DEFAULT_VENV = "/opt/digitsum-jupyterlab";
/** The JupyterLab major version the browser test is written for. */
export const LAB_MAJOR = 4;
/** Plotly's JupyterLab renderer of `application/vnd.plotly.v1+json` (the `plotly` pip package). */
export const PLOTLY_EXTENSION = "jupyterlab-plotly";
/**
 * The renderer's plugin. `jupyter labextension disable jupyterlab-plotly` is not enough: JupyterLab
 * matches disabled names against plugin ids, and this one starts with `@jupyterlab/plotly-extension`,
 * so the renderer keeps working; disabling the plugin id turns it off.
 */
export const PLOTLY_PLUGIN = "@jupyterlab/plotly-extension:factory";
/** Repository entries the scratch copy links to (notebooks/ is copied; runs/ is its own). */
const LINKED = [
  "lib",
  "data",
  "docs",
  "trained_models",
  "node_modules",
  "deno.json",
  "deno.lock",
];
/** How long `jupyter lab` may take to answer, milliseconds. */
const START_TIMEOUT_MS = 90_000;

/** A running JupyterLab. */
export interface JupyterLab {
  /** Base URL, e.g. `http://127.0.0.1:8899`. */
  base: string;
  token: string;
  /** The scratch root it serves (holds `notebooks/` copies). */
  root: string;
  /** The URL that opens a notebook (path relative to `root`) with `?reset`. */
  notebookUrl(path: string): string;
  /** Everything `jupyter lab` printed so far. */
  log(): string;
  /** Stop the server (and its kernels). */
  stop(): Promise<void>;
}

/** Options of {@link startJupyterLab}. */
export interface StartOptions {
  /** Notebooks run in quick mode (`DIGITSUM_QUICK=1`, the default). */
  quick?: boolean;
  /** Disable Plotly's renderer with `jupyter labextension disable` (default false). */
  noPlotly?: boolean;
  /** Serve this scratch root (from an earlier run) instead of making a new one. */
  root?: string;
  /** Port (default: a free one). */
  port?: number;
}

/** The `jupyter` executable to use: the venv's when it has one, else the one on PATH. */
export function jupyterCommand(): string {
  const venv = Deno.env.get("DIGITSUM_JUPYTERLAB_VENV") ?? DEFAULT_VENV;
  try {
    Deno.statSync(join(venv, "bin", "jupyter-lab"));
    return join(venv, "bin", "jupyter");
  } catch {
    return "jupyter";
  }
}

/** The Python that runs that `jupyter` (for nbformat). */
export function pythonCommand(): string {
  const jupyter = jupyterCommand();
  return jupyter === "jupyter" ? "python3" : join(jupyter, "..", "python");
}

async function output(command: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { success, stdout, stderr } = await new Deno.Command(command, {
      args,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    return { ok: success, text };
  } catch (error) {
    return { ok: false, text: String(error) };
  }
}

/** Why JupyterLab 4 with the Deno kernel cannot run here, or `undefined` when it can. */
export async function missingJupyterLab(): Promise<string | undefined> {
  const jupyter = jupyterCommand();
  const lab = await output(jupyter, ["lab", "--version"]);
  if (!lab.ok) return `JupyterLab is not installed (${jupyter} lab --version: ${lab.text.trim()})`;
  const version = lab.text.trim().split("\n").pop() ?? "";
  if (Number(version.split(".")[0]) !== LAB_MAJOR) {
    return `JupyterLab ${version} found, the test needs ${LAB_MAJOR}.x`;
  }
  const kernels = await output(jupyter, ["kernelspec", "list", "--json"]);
  if (!kernels.ok || !kernels.text.includes('"deno"')) {
    return "the Deno Jupyter kernel is not installed (deno jupyter --install)";
  }
  return undefined;
}

/** Whether Plotly's JupyterLab renderer is installed (the `plotly` pip package). */
export async function plotlyRendererInstalled(): Promise<boolean> {
  const list = await output(jupyterCommand(), ["labextension", "list"]);
  return list.text.includes(PLOTLY_EXTENSION);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * A scratch root for JupyterLab: `notebooks/` copied from the repository, the rest linked, so
 * the notebooks' `../lib/` imports and `data/` work and a notebook saved from JupyterLab is a
 * copy.
 */
export async function makeScratchRoot(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "digitsum_jupyterlab_" });
  for (const name of LINKED) {
    try {
      await Deno.symlink(join(REPO_ROOT, name), join(root, name));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  await Deno.mkdir(join(root, "notebooks"));
  for (const entry of Deno.readDirSync(join(REPO_ROOT, "notebooks"))) {
    if (entry.name.endsWith(".ipynb")) {
      await Deno.copyFile(
        join(REPO_ROOT, "notebooks", entry.name),
        join(root, "notebooks", entry.name),
      );
    }
  }
  return root;
}

/** JupyterLab settings for a test: every cell in the page, no news or update checks. */
const USER_SETTINGS: Record<string, unknown> = {
  "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": { windowingMode: "none" },
  "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
    fetchNews: "false",
    checkForUpdates: false,
  },
};

/**
 * Start `jupyter lab` on 127.0.0.1 with a token, its own config (where `noPlotly` disables
 * Plotly's renderer with `jupyter labextension disable --level=user`), settings and workspaces.
 */
export async function startJupyterLab(options: StartOptions = {}): Promise<JupyterLab> {
  const root = options.root ?? await makeScratchRoot();
  const home = await Deno.makeTempDir({ prefix: "digitsum_jupyterlab_home_" });
  const env: Record<string, string> = {
    JUPYTER_CONFIG_DIR: join(home, "config"),
    JUPYTER_RUNTIME_DIR: join(home, "runtime"),
    DIGITSUM_QUICK: options.quick === false ? "0" : "1",
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    NO_COLOR: "1",
  };
  const settings = join(home, "settings");
  for (const [path, value] of Object.entries(USER_SETTINGS)) {
    const file = join(settings, path);
    await Deno.mkdir(join(file, ".."), { recursive: true });
    await Deno.writeTextFile(file, JSON.stringify(value));
  }
  const jupyter = jupyterCommand();
  if (options.noPlotly) {
    const disabled = await output(
      jupyter,
      ["labextension", "disable", "--level=user", PLOTLY_PLUGIN],
      env,
    );
    if (!disabled.ok) throw new Error(`Cannot disable ${PLOTLY_PLUGIN}: ${disabled.text}`);
  }
  const token = crypto.randomUUID().replaceAll("-", "");
  const port = options.port ?? freePort();
  const child = new Deno.Command(jupyter, {
    args: [
      "lab",
      "--no-browser",
      "--allow-root",
      "--ip=127.0.0.1",
      `--port=${port}`,
      `--IdentityProvider.token=${token}`,
      `--ServerApp.root_dir=${root}`,
      `--LabApp.user_settings_dir=${settings}`,
      `--LabApp.workspaces_dir=${join(home, "workspaces")}`,
    ],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const collect = async (stream: ReadableStream<Uint8Array<ArrayBuffer>>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  };
  const reading = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 15_000);
    await child.status;
    clearTimeout(timer);
    await reading;
    await Deno.remove(home, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const ready = await fetch(`${base}/api/status?token=${token}`).then(
      (r) => r.body?.cancel().then(() => r.ok) ?? r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jupyter lab did not start within ${START_TIMEOUT_MS / 1000} s:\n${text}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    base,
    token,
    root,
    notebookUrl: (path) => `${base}/lab/tree/${path}?reset&token=${token}`,
    log: () => text,
    stop,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      "no-plotly": { type: "boolean", default: false },
      port: { type: "string" },
    },
  });
  const missing = await missingJupyterLab();
  if (missing) {
    console.error(`jupyterlab.ts: ${missing}`);
    Deno.exit(1);
  }
  const lab = await startJupyterLab({
    quick: values.quick,
    noPlotly: values["no-plotly"],
    port: values.port ? Number(values.port) : undefined,
  });
  console.log(`JupyterLab: ${lab.base}/lab?token=${lab.token} (serving a copy at ${lab.root})`);
  Deno.addSignalListener("SIGINT", async () => {
    await lab.stop();
    Deno.exit(0);
  });
}
