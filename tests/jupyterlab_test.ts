/**
 * The notebooks in JupyterLab 4 in a real browser (Debian's Chromium driven by npm's
 * playwright-core), run through JupyterLab's own menus in quick mode:
 *
 * - with Plotly's renderer: `study.ipynb` is run with Run > Run All Cells, Kernel > Interrupt is
 *   pressed while the regressor trains, the interrupted cell is run again with everything below
 *   it (it resumes), and the page is checked; the notebook is saved from JupyterLab and
 *   validated as nbformat 4;
 * - with the renderer disabled (`jupyter labextension disable`): the saved `study.ipynb` shows
 *   its charts as images, and `beyond.ipynb` is run and checked;
 * - in a terminal: `tools/show_charts.ts --plot window` serves nodeplotlib's window offline.
 *
 * Screenshots of both notebooks go to `docs/`. Needs JupyterLab 4 with the `plotly` package and
 * the Deno kernel, and Chromium: skipped with a message without them, required when `CI=true`
 * (`.ci/run` installs them).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { repoPath } from "../lib/notebook/mod.ts";
import {
  type JupyterLab,
  missingJupyterLab,
  plotlyRendererInstalled,
  pythonCommand,
  startJupyterLab,
} from "../tools/jupyterlab.ts";

/** Debian's Chromium (never `playwright install`). */
const CHROMIUM = "/usr/bin/chromium";
/** Chromium as root, offline, headless. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const VIEWPORT = { width: 1400, height: 1000 };
/** Longest wait for a notebook's cells to finish (quick mode, a busy 2-core machine). */
const RUN_TIMEOUT_MS = 10 * 60_000;
/** How often the page is read while cells run. */
const POLL_MS = 150;
const SCREENSHOTS = {
  study: "docs/jupyterlab_study.png",
  beyond: "docs/jupyterlab_beyond.png",
};
const INSTALL_HINT = "tools/install_jupyterlab.sh installs them";

async function missingTools(): Promise<string | undefined> {
  const lab = await missingJupyterLab();
  if (lab) return lab;
  if (!await plotlyRendererInstalled()) {
    return "Plotly's JupyterLab renderer is not installed (pip install plotly)";
  }
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return `Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`;
  }
  return undefined;
}

const missing = await missingTools();
const required = Deno.env.get("CI") === "true";
if (missing && !required) {
  console.log(
    `jupyterlab_test: skipping the JupyterLab browser tests: ${missing}; ${INSTALL_HINT}.`,
  );
}

// ---------------------------------------------------------------------------------------------
// Reading the page

/** The DOM as the `page.evaluate` callbacks use it (this file is type-checked without the DOM). */
interface Element {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): Element | null;
  querySelectorAll(selector: string): Iterable<Element> & ArrayLike<Element>;
}
interface ImageElement extends Element {
  complete: boolean;
  naturalWidth: number;
  src: string;
}
declare const document: Element;

/** One output of a cell as JupyterLab shows it. */
interface Output {
  /** `data-mime-type` of the rendered output (`application/vnd.jupyter.stderr` for errors). */
  mime: string;
  text: string;
}

/** A code cell as JupyterLab shows it. */
interface CellView {
  /** The cell's source (from the file: the editors render only their visible lines). */
  source: string;
  /** The prompt, e.g. `[3]:`, `[*]:`, `[ ]:`. */
  prompt: string;
  outputs: Output[];
}

/** The code cells of the open notebook, with their outputs; `sources` from its file. */
async function readCells(page: Page, sources: readonly string[]): Promise<CellView[]> {
  const cells = await page.evaluate(() =>
    [...document.querySelectorAll(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")].map(
      (cell) => ({
        prompt: cell.querySelector(".jp-InputPrompt")?.textContent?.trim() ?? "",
        outputs: [...cell.querySelectorAll(".jp-OutputArea-output")].map((o) => ({
          mime: o.getAttribute("data-mime-type") ?? "",
          text: o.textContent ?? "",
        })),
      }),
    )
  );
  assert.equal(cells.length, sources.length, "code cells on the page and in the file");
  return cells.map((cell, i) => ({ ...cell, source: sources[i] }));
}

/** The sources of a notebook file's code cells, in order. */
async function codeSources(path: string): Promise<string[]> {
  const notebook = JSON.parse(await Deno.readTextFile(path));
  return (notebook.cells as { cell_type: string; source: string | string[] }[])
    .filter((c) => c.cell_type === "code")
    .map((c) => Array.isArray(c.source) ? c.source.join("") : c.source);
}

const isRunning = (cell: CellView) => cell.prompt.includes("*");
/** The live progress line of a training cell, e.g. `epoch 1/1 [####....] 50% 4/8 ...`. */
const PROGRESS = /^epoch \d+\/\d+ \[/;

/** What {@link waitForIdle} saw: the progress lines of each cell while it was running. */
type ProgressLog = Map<number, Set<string>>;

function recordProgress(cells: CellView[], log: ProgressLog): void {
  cells.forEach((cell, i) => {
    if (!isRunning(cell)) return;
    for (const output of cell.outputs) {
      if (PROGRESS.test(output.text)) {
        if (!log.has(i)) log.set(i, new Set());
        log.get(i)!.add(output.text);
      }
    }
  });
}

/** The open notebook as the test follows it. */
interface Session {
  page: Page;
  /** Its code cells' sources. */
  sources: string[];
  /** Progress lines seen so far. */
  progress: ProgressLog;
}

/**
 * After a run was started: wait until cells ran and then no cell runs or waits (`[*]`) and the
 * kernel is idle, reading the page every {@link POLL_MS} ms; `until` may end the wait early.
 */
async function waitForIdle(
  session: Session,
  until?: (cells: CellView[]) => boolean,
): Promise<CellView[]> {
  const { page, sources, progress } = session;
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  let quiet = 0;
  let started = false;
  for (;;) {
    const cells = await readCells(page, sources);
    recordProgress(cells, progress);
    if (until?.(cells)) return cells;
    const idle = await page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
      .count();
    started ||= cells.some(isRunning) || idle === 0;
    quiet = started && !cells.some(isRunning) && idle > 0 ? quiet + 1 : 0;
    if (quiet >= 3) return cells;
    if (Date.now() > deadline) {
      throw new Error(`cells still running after ${RUN_TIMEOUT_MS / 1000} s`);
    }
    await page.waitForTimeout(POLL_MS);
  }
}

/** Open a notebook of the lab's root and wait for its kernel. */
async function openNotebook(page: Page, lab: JupyterLab, path: string): Promise<Session> {
  const sources = await codeSources(join(lab.root, path));
  await page.goto(lab.notebookUrl(path));
  await page.locator(".jp-NotebookPanel .jp-CodeCell").first().waitFor({ timeout: 120_000 });
  await page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").waitFor({
    timeout: 120_000,
  });
  // JupyterLab adds the cells in chunks; wait for all of them.
  const cellCount = page.locator(".jp-CodeCell");
  const deadline = Date.now() + 60_000;
  while (await cellCount.count() < sources.length) {
    assert.ok(Date.now() < deadline, `${path}: not all cells appeared`);
    await page.waitForTimeout(100);
  }
  // Close the file browser (click its current tab): more room for the notebook.
  await page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click();
  return { page, sources, progress: new Map() };
}

/** Choose a command from JupyterLab's menu bar, e.g. `("Run", "runmenu:run-all")`. */
async function menu(page: Page, title: string, command: string): Promise<void> {
  await page.locator(".lm-MenuBar-item", { hasText: title }).first().click();
  await page.locator(`.lm-Menu-item[data-command='${command}']`).first().click();
}

function cellIndex(cells: CellView[], snippet: string): number {
  const i = cells.findIndex((c) => c.source.includes(snippet));
  assert.ok(i >= 0, `no cell contains '${snippet}'`);
  return i;
}

const allText = (cells: CellView[]) =>
  cells.flatMap((c) => c.outputs.map((o) => o.text)).join("\n");
const errors = (cells: CellView[]) =>
  cells.flatMap((c, i) =>
    c.outputs.filter((o) => o.mime === "application/vnd.jupyter.stderr").map((o) =>
      `cell ${i + 1} (${c.source.slice(0, 60)}): ${o.text.slice(0, 300)}`
    )
  );

/** Images in the outputs: how many, and those that did not load. */
async function images(page: Page): Promise<{ count: number; broken: string[] }> {
  return await page.evaluate(() => {
    const all = [...document.querySelectorAll(".jp-OutputArea-output img")] as ImageElement[];
    const broken = all.filter((img) => !img.complete || img.naturalWidth === 0)
      .map((img) => img.src.slice(0, 60));
    return { count: all.length, broken };
  });
}

/** HTML outputs: how many, and those that show no rendered table with rows. */
async function tables(page: Page): Promise<{ count: number; notTables: string[] }> {
  return await page.evaluate(() => {
    const html = [
      ...document.querySelectorAll(".jp-OutputArea-output[data-mime-type='text/html']"),
    ];
    const notTables = html.filter((o) => o.querySelectorAll("table tbody tr").length === 0)
      .map((o) => (o.textContent ?? "").slice(0, 80));
    // A table shown as text: HTML source, or the Markdown copy of a bundle.
    const raw = [...document.querySelectorAll(".jp-OutputArea-output")]
      .filter((o) => o.getAttribute("data-mime-type") !== "text/html")
      .filter((o) => /<table|\|-{3,}/.test(o.textContent ?? ""))
      .map((o) => `as text: ${(o.textContent ?? "").slice(0, 80)}`);
    return { count: html.length, notTables: [...notTables, ...raw] };
  });
}

/** The checks every executed notebook must pass on the page. */
async function assertRendered(page: Page, cells: CellView[], name: string): Promise<void> {
  assert.deepEqual(errors(cells), [], `${name}: error outputs`);
  const counts = cells.map((c) => c.prompt.match(/^\[(\d+)\]:$/)?.[1]);
  assert.ok(counts.every((n) => n !== undefined), `${name}: cells not run: ${counts}`);
  assert.equal(new Set(counts).size, counts.length, `${name}: two cells with one count`);
  const shown = await images(page);
  assert.ok(shown.count > 0, `${name}: no images`);
  assert.deepEqual(shown.broken, [], `${name}: images that did not load`);
  const html = await tables(page);
  assert.ok(html.count > 0, `${name}: no tables`);
  assert.deepEqual(html.notTables, [], `${name}: HTML outputs without a rendered table`);
}

function assertProgressChanged(log: ProgressLog, cell: number, name: string): void {
  const seen = log.get(cell) ?? new Set();
  assert.ok(
    seen.size >= 2,
    `${name}: the progress line did not change while cell ${cell + 1} ran: ${[...seen]}`,
  );
}

const profiles = new Map<BrowserContext, string>();

/** Chromium with a fresh profile (see {@link closeBrowser}). */
async function newBrowser(): Promise<BrowserContext> {
  const profile = await Deno.makeTempDir({ prefix: "digitsum_chromium_" });
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: VIEWPORT,
  });
  profiles.set(browser, profile);
  return browser;
}

/** Close the browser and remove its profile. */
async function closeBrowser(browser: BrowserContext): Promise<void> {
  await browser.close();
  const profile = profiles.get(browser);
  profiles.delete(browser);
  // Chromium may still be writing while it exits: try a few times.
  for (let attempt = 0; profile && attempt < 10; attempt++) {
    try {
      await Deno.remove(profile, { recursive: true });
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function screenshot(page: Page, path: string): Promise<void> {
  const tmp = repoPath(`${path}.tmp`);
  await page.screenshot({ path: tmp, type: "png" });
  await Deno.rename(tmp, repoPath(path));
}

// ---------------------------------------------------------------------------------------------
// The tests

Deno.test({
  name: "study.ipynb and beyond.ipynb run in JupyterLab 4: interrupt, resume, plots, save",
  ignore: missing !== undefined && !required,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    assert.equal(missing, undefined, `CI=true requires the browser test's tools: ${missing}`);
    const browser = await newBrowser();
    let root: string | undefined;
    try {
      const saved = await t.step(
        "with Plotly's renderer: study.ipynb, interrupted and resumed",
        async () => {
          const lab = await startJupyterLab();
          root = lab.root;
          try {
            const page = await browser.newPage();
            const study = await openNotebook(page, lab, "notebooks/study.ipynb");
            const started = performance.now();
            await menu(page, "Run", "runmenu:run-all");
            // Interrupt as soon as the regressor shows its progress line.
            let regressor = -1;
            await waitForIdle(study, (cells) => {
              regressor = cellIndex(cells, 'trainStudyModel("cnn-regressor"');
              return isRunning(cells[regressor]) &&
                cells[regressor].outputs.some((o) => PROGRESS.test(o.text));
            });
            await menu(page, "Kernel", "kernelmenu:interrupt");
            let cells = await waitForIdle(study);
            const stop = allText([cells[regressor]]).match(
              /KernelInterrupt.*stopped during epoch 1\/1 \(after batch (\d+)\/(\d+)\)/s,
            );
            assert.ok(stop, `the regressor was not interrupted:\n${allText([cells[regressor]])}`);
            const [stoppedAt, batches] = [Number(stop[1]), Number(stop[2])];
            assert.ok(stoppedAt < batches, "it stopped before the end of the epoch");
            const classifier = cellIndex(cells, 'trainStudyModel("cnn-classifier"');
            assert.match(
              allText([cells[classifier]]),
              /was not started because the kernel was interrupted/,
              "the training queued behind the interrupted one started",
            );
            // Run the interrupted cell and everything below it: it resumes.
            await page.locator(".jp-CodeCell").nth(regressor).locator(".jp-InputPrompt").click();
            await menu(page, "Run", "notebook:run-all-below");
            cells = await waitForIdle(study);
            const seconds = (performance.now() - started) / 1000;
            console.log(`study.ipynb in JupyterLab: ${seconds.toFixed(0)} s with the interrupt`);
            assert.match(
              allText([cells[regressor]]),
              new RegExp(
                `Resuming CNN Regressor seed 42 at epoch 1/1, batch ${stoppedAt + 1}/` +
                  `${batches}[^]*Epoch 1/1, Train Loss: \\d+\\.\\d{4}`,
              ),
            );
            await assertRendered(page, cells, "study.ipynb");
            const text = allText(cells);
            for (const noun of ["Regressor", "Classifer"]) {
              for (const split of ["Validation", "Training", "Held-out Test"]) {
                assert.match(
                  text,
                  new RegExp(
                    `Overall Accuracy of ${noun} on ${split}( \\(first \\d+\\))? Split: ` +
                      "\\d+\\.\\d\\d%",
                  ),
                );
              }
            }
            assertProgressChanged(study.progress, classifier, "study.ipynb");
            // Charts: Plotly's renderer shows them (the PNG until the pointer comes, then the
            // interactive chart, whose points answer with hover labels).
            const charts = page.locator(".jp-RenderedPlotly");
            assert.ok(await charts.count() >= 3, "Plotly's renderer shows no charts");
            const bars = charts.first();
            await bars.scrollIntoViewIfNeeded();
            await bars.hover();
            await bars.locator(".plot-container").waitFor({ timeout: 30_000 });
            // Plotly's drag layer takes the pointer events and finds the bar under the pointer.
            const bar = await bars.locator(".bars .point path").first().boundingBox();
            assert.ok(bar, "no bar to point at");
            await page.mouse.move(bar.x + bar.width / 2, bar.y + bar.height / 2, { steps: 4 });
            await bars.locator(".hoverlayer .hovertext").first().waitFor({ timeout: 10_000 });
            await screenshot(page, SCREENSHOTS.study);
            // Save from JupyterLab and check the file.
            const saved = join(lab.root, "notebooks", "study.ipynb");
            const before = (await Deno.stat(saved)).mtime?.getTime() ?? 0;
            await page.locator(".jp-CodeCell").first().locator(".jp-InputPrompt").click();
            await menu(page, "File", "docmanager:save");
            const deadline = Date.now() + 30_000;
            while (((await Deno.stat(saved)).mtime?.getTime() ?? 0) <= before) {
              assert.ok(Date.now() < deadline, "JupyterLab did not save the notebook");
              await page.waitForTimeout(200);
            }
            await page.waitForTimeout(500);
            await assertValidNotebook(saved);
            await page.close();
          } finally {
            await lab.stop();
          }
        },
      );

      await t.step("without Plotly's renderer: images, and beyond.ipynb", async () => {
        const lab = await startJupyterLab({ noPlotly: true, root });
        try {
          if (saved) {
            const page = await browser.newPage();
            await openNotebook(page, lab, "notebooks/study.ipynb"); // as saved above
            assert.equal(await page.locator(".jp-RenderedPlotly").count(), 0);
            const charts = await chartBundles(join(lab.root, "notebooks", "study.ipynb"));
            const shown = await images(page);
            assert.ok(shown.count >= charts, `${charts} charts, ${shown.count} images`);
            assert.deepEqual(shown.broken, []);
            await page.close();
          }

          const beyond = await browser.newPage();
          const session = await openNotebook(beyond, lab, "notebooks/beyond.ipynb");
          const started = performance.now();
          await menu(beyond, "Run", "runmenu:run-all");
          const cells = await waitForIdle(session);
          console.log(
            `beyond.ipynb in JupyterLab: ${((performance.now() - started) / 1000).toFixed(0)} s`,
          );
          await assertRendered(beyond, cells, "beyond.ipynb");
          const text = allText(cells);
          assert.match(text, /Overall Accuracy of Model on Held-out Test Split: \d+\.\d\d%/);
          assert.match(text, /Epoch 1\/1, Train Loss: /);
          assertProgressChanged(
            session.progress,
            cellIndex(cells, "nb.runInNotebook("),
            "beyond.ipynb",
          );
          assert.equal(await beyond.locator(".jp-RenderedPlotly").count(), 0);
          await beyond.locator(".jp-OutputArea-output img").first().scrollIntoViewIfNeeded();
          await beyond.locator(".jp-CodeCell", { hasText: "nb.readoutFigure(" })
            .locator(".jp-OutputArea-output img").first().scrollIntoViewIfNeeded();
          await screenshot(beyond, SCREENSHOTS.beyond);
          await beyond.close();
        } finally {
          await lab.stop();
        }
      });
    } finally {
      await closeBrowser(browser);
      if (root) await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

/** Validate a notebook file as nbformat 4 with Python's nbformat; check its kernel metadata. */
async function assertValidNotebook(path: string): Promise<void> {
  const script = "import sys, nbformat\n" +
    "nb = nbformat.read(sys.argv[1], as_version=4)\n" +
    "nbformat.validate(nb)\n" +
    "print(nb.nbformat, nb.metadata.kernelspec.name, nb.metadata.language_info.name)";
  const { success, stdout, stderr } = await new Deno.Command(pythonCommand(), {
    args: ["-c", script, path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout).trim();
  assert.ok(success, `nbformat rejects the saved notebook:\n${new TextDecoder().decode(stderr)}`);
  assert.equal(out, "4 deno typescript");
}

/** How many outputs of a saved notebook carry a Plotly figure (each with its PNG). */
async function chartBundles(path: string): Promise<number> {
  const notebook = JSON.parse(await Deno.readTextFile(path));
  const outputs = notebook.cells.flatMap((c: { outputs?: unknown[] }) => c.outputs ?? []) as {
    data?: Record<string, unknown>;
  }[];
  const charts = outputs.filter((o) => o.data?.["application/vnd.plotly.v1+json"]);
  assert.ok(charts.length >= 3, `the saved notebook has ${charts.length} Plotly charts`);
  assert.ok(charts.every((o) => o.data?.["image/png"]), "a chart lost its PNG");
  return charts.length;
}

Deno.test({
  name: "tools/show_charts.ts --plot window serves nodeplotlib's window offline",
  ignore: missing !== undefined && !required,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.equal(missing, undefined, `CI=true requires the browser test's tools: ${missing}`);
    const dir = await Deno.makeTempDir();
    const results = join(dir, "results.json");
    const history = (losses: number[]) =>
      losses.map((trainLoss, i) => ({ epoch: i + 1, trainLoss, valAccuracy: 5 + i }));
    const accuracy = (train: number, val: number) => ({
      train: { correct: train, total: 100, accuracy: train },
      val: { correct: val, total: 100, accuracy: val },
    });
    // The shape of a sweep's results.json: its configuration and the rows of its grid.
    await Deno.writeTextFile(
      results,
      JSON.stringify({
        config: { epochs: 3, limit: null },
        runs: [
          { model: "cnn-regressor", seed: 0, status: "done", accuracy: accuracy(20, 11) },
          { model: "cnn-classifier", seed: 0, status: "done", accuracy: accuracy(70, 8) },
        ].map((run, i) => ({ ...run, epochs: 3, history: history(i ? [3, 2, 1] : [9, 5, 4]) })),
      }),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", repoPath("tools/show_charts.ts"), "--plot", "window", "--results"]
        .concat([results, "--no-open"]),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let out = "";
    const reading = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
    })();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const browser = await newBrowser();
    try {
      const deadline = Date.now() + 120_000;
      let url: string | undefined;
      while (!(url = out.match(/nodeplotlib, offline\): (\S+)/)?.[1])) {
        assert.ok(Date.now() < deadline, `no window URL:\n${out}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const outside: string[] = [];
      await browser.route("**/*", (route) => {
        const address = route.request().url();
        if (address.startsWith("http://127.0.0.1:")) return route.continue();
        outside.push(address);
        return route.abort();
      });
      const page = await browser.newPage();
      await page.goto(url);
      // Accuracy bars, two loss charts, validation accuracy: four plots.
      await page.locator(".js-plotly-plot").nth(3).waitFor({ timeout: 60_000 });
      assert.equal(await page.locator(".js-plotly-plot").count(), 4);
      assert.ok(await page.locator(".js-plotly-plot .bars .point").count() > 0, "no bars");
      assert.deepEqual(outside, [], "the window asked for something outside this machine");
      await page.close({ runBeforeUnload: true });
      const status = await Promise.race([
        child.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 30_000)),
      ]);
      assert.equal(status?.code, 0, "show_charts.ts did not end after its page was closed");
    } finally {
      await closeBrowser(browser);
      try {
        child.kill("SIGKILL");
      } catch {
        // ended
      }
      await child.status;
      await reading;
      await stderr.cancel();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
