/**
 * The shape of lib/: its import graph has no cycle, and docs/ARCHITECTURE.md names every module.
 * Both read the source as text (static `import`/`export ... from` and dynamic `import("...")`),
 * so a module that is never loaded by a test still counts.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const LIB = join(ROOT, "lib");
/** Relative module specifiers in `import`, `export ... from` and `import("...")`. */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;

/** Every `.ts` file under `dir`, relative to the repository root, sorted. */
async function modulesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...await modulesUnder(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) found.push(relative(ROOT, path));
  }
  return found.sort();
}

/** The lib/ modules a module imports (paths relative to the repository root). */
export function importsOf(module: string, source: string): string[] {
  const targets = new Set<string>();
  // Comment lines are left out (a JSDoc example may show an import).
  const code = source.split("\n").filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join("\n");
  for (const match of code.matchAll(SPECIFIER)) {
    targets.add(normalize(join(dirname(module), match[1])));
  }
  return [...targets].filter((t) => t.startsWith("lib/"));
}

/** One import cycle of the graph (as a path that ends where it starts), or undefined. */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === "done") return undefined;
    if (state.get(node) === "open") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

async function libGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const module of await modulesUnder(LIB)) {
    graph.set(module, importsOf(module, await Deno.readTextFile(join(ROOT, module))));
  }
  return graph;
}

Deno.test("findCycle() finds a cycle through several modules and none in a tree", () => {
  const cyclic = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(findCycle(cyclic), ["a", "b", "c", "a"]);
  assert.equal(findCycle(new Map([["a", ["b", "c"]], ["b", ["c"]], ["c", []]])), undefined);
  assert.deepEqual(
    importsOf("lib/x/y.ts", 'import { a } from "../z.ts";\nconst m = await import("./w.ts");'),
    ["lib/z.ts", "lib/x/w.ts"],
  );
});

Deno.test("lib/ has no import cycle and imports only files that exist", async () => {
  const graph = await libGraph();
  for (const [module, targets] of graph) {
    for (const target of targets) {
      assert.ok(graph.has(target), `${module} imports ${target}, which does not exist`);
    }
  }
  const cycle = findCycle(graph);
  assert.equal(cycle, undefined, `import cycle: ${cycle?.join(" -> ")}`);
});

Deno.test("docs/ARCHITECTURE.md names every module of lib/", async () => {
  const map = await Deno.readTextFile(join(ROOT, "docs", "ARCHITECTURE.md"));
  const missing = (await modulesUnder(LIB)).filter((m) => !map.includes(m.slice("lib/".length)));
  assert.deepEqual(missing, [], `docs/ARCHITECTURE.md does not name ${missing.join(", ")}`);
});
