/**
 * Installing the native TensorFlow backend (`@tensorflow/tfjs-node`) without its install
 * script, which downloads libtensorflow from Google's storage: the TensorFlow C library is taken
 * from a TensorFlow Python wheel (or an installed TensorFlow, or a libtensorflow tarball), kept
 * once per user, and the package's N-API addon is built against it with npm's node-gyp.
 *
 * Per-user cache (`$DIGITSUM_CACHE_DIR`, else `$XDG_CACHE_HOME/digitsum`, else
 * `~/.cache/digitsum`):
 *
 * ```
 * native/libtensorflow/<version>-<cpu|gpu>/lib/      libtensorflow_cc.so.2 (or libtensorflow.so.2),
 *                                                    libtensorflow_framework.so.2, link names
 * native/libtensorflow/<version>-<cpu|gpu>/include/  the C API headers the binding needs
 * native/addons/<key>/tfjs_binding.node              the built addon, one per library and package
 * native/addons/<key>/digitsum_kernels-<hash>.so     digitsum's own kernels (lib/runtime/native/),
 *                                                    one per library and source version
 * native/wheels/                                     wheels fetched with `pip download`
 * ```
 *
 * The package in `node_modules` then gets `deps -> <library dir>` and
 * `lib/napi-v8/tfjs_binding.node` (a copy): the addon finds the library through its RUNPATH
 * (`$ORIGIN/../../deps/lib`), so no `LD_LIBRARY_PATH` is needed. A second clone on the same
 * machine links the cached library and copies the cached addon: seconds.
 *
 * @module
 */

import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { ensureDir, exists, writeFileAtomic, writeJsonAtomic } from "../io/fsutil.ts";

/** The tfjs-node release matching the project's tfjs (pinned in deno.json). */
export const TFJS_NODE_VERSION = "4.22.0";

/** TensorFlow release whose C library is fetched by default (tfjs-node 4.22 was built on 2.9). */
export const DEFAULT_TF_VERSION = "2.21.0";

/** N-API version the addon is built for (the highest tfjs-node 4.22 lists; Deno offers 10). */
export const NAPI_BUILD_VERSION = 8;

/** Where a TensorFlow C library came from. */
export type LibrarySourceKind = "from" | "python" | "pip" | "package-download";

/** A staged, checked TensorFlow C library. */
export interface StagedLibrary {
  /** `<cache>/native/libtensorflow/<version>-<variant>`, with `lib/` and `include/`. */
  dir: string;
  /** `TF_Version()` of the library, e.g. `2.21.0`. */
  version: string;
  variant: "cpu" | "gpu";
}

/** What {@link installNative} did. */
export interface NativeInstallResult {
  /** The npm package set up (`@tensorflow/tfjs-node` or `-gpu`). */
  pkg: string;
  packageDir: string;
  source: LibrarySourceKind;
  /** The wheel, directory or tarball the library came from. */
  sourcePath: string;
  library: StagedLibrary;
  /** True when the addon was compiled now, false when a cached build was reused. */
  built: boolean;
  addonPath: string;
  /** digitsum's kernel library (lib/runtime/native/), or undefined when it could not be built. */
  kernelLibrary?: string;
  seconds: number;
}

/** Options of {@link installNative}. */
export interface NativeInstallOptions {
  /** A TensorFlow wheel (`.whl`), a directory holding the C library, or a libtensorflow `.tar.gz`. */
  from?: string;
  /** Set up `@tensorflow/tfjs-node-gpu` with a GPU build of TensorFlow (default false). */
  gpu?: boolean;
  /** TensorFlow version fetched with pip when nothing else is found. */
  tfVersion?: string;
  /** Cache root (default {@link digitsumCacheDir}). */
  cacheDir?: string;
  /** Project root whose `node_modules` holds the package (default: this repository). */
  projectDir?: string;
  /** Rebuild the addon even when a cached build exists. */
  force?: boolean;
  /** Progress lines (default `console.log`). */
  log?: (line: string) => void;
}

/** The per-user cache root of digitsum. */
export function digitsumCacheDir(): string {
  const env = (name: string) => {
    const value = Deno.env.get(name);
    return value && value.trim() !== "" ? value : undefined;
  };
  const explicit = env("DIGITSUM_CACHE_DIR");
  if (explicit) return resolve(explicit);
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(resolve(xdg), "digitsum");
  const home = env("HOME");
  if (!home) throw new Error("Cannot find a cache folder: set DIGITSUM_CACHE_DIR or HOME");
  return join(home, ".cache", "digitsum");
}

/**
 * Names of the TensorFlow C API functions that the binding's sources call and the headers
 * declare as exported (`TF_CAPI_EXPORT`): what the library must provide. Helper classes of the
 * binding (`TF_AutoStatus`) and inline header functions (`TF_TString_*`) are left out.
 *
 * @param bindingSources the text of the binding's `.cc`/`.h` files
 * @param headers the text of the C API headers
 */
export function requiredCApiSymbols(bindingSources: string[], headers: string[]): string[] {
  const called = new Set<string>();
  for (const text of bindingSources) {
    for (const match of text.matchAll(/\b(TFE?_[A-Z][A-Za-z0-9_]*)\s*\(/g)) called.add(match[1]);
  }
  const exported = new Set<string>();
  for (const text of headers) {
    // TF_CAPI_EXPORT extern <type> NAME(   -- the type may span words and pointers.
    for (
      const match of text.matchAll(/TF_CAPI_EXPORT\s+extern\s+[^;(]*?\b(TFE?_[A-Za-z0-9_]+)\s*\(/g)
    ) {
      exported.add(match[1]);
    }
  }
  return [...called].filter((name) => exported.has(name)).sort();
}

/** The library file that holds the C API inside a staged `lib/` folder. */
export function cApiLibraryName(libDir: string): string {
  for (const name of ["libtensorflow_cc.so.2", "libtensorflow.so.2"]) {
    try {
      Deno.statSync(join(libDir, name));
      return name;
    } catch {
      // try the next name
    }
  }
  throw new Error(
    `Cannot find the TensorFlow C library in ${libDir}: expected libtensorflow_cc.so.2 ` +
      "(a TensorFlow wheel) or libtensorflow.so.2 (a libtensorflow tarball)",
  );
}

/**
 * Opens the staged library and checks it: its `TF_Version()` and that every symbol in `symbols`
 * is exported.
 *
 * @returns the library's version
 * @throws Error naming the library and the missing symbols
 */
export function checkLibrary(libDir: string, symbols: string[]): string {
  const name = cApiLibraryName(libDir);
  const path = join(libDir, name);
  const definitions: Record<string, Deno.ForeignFunction> = {
    TF_Version: { parameters: [], result: "pointer" },
  };
  for (const symbol of symbols) {
    if (symbol !== "TF_Version") {
      definitions[symbol] = { parameters: [], result: "void", optional: true };
    }
  }
  let library: Deno.DynamicLibrary<typeof definitions>;
  try {
    library = Deno.dlopen(path, definitions);
  } catch (error) {
    throw new Error(`Cannot load ${path}: ${error instanceof Error ? error.message : error}`);
  }
  // Not dlclose'd: unloading libtensorflow leaves its static destructors pointing into unmapped
  // code, and the process dies with SIGSEGV at exit. It stays mapped until the process ends.
  const missing = symbols.filter((s) => (library.symbols as Record<string, unknown>)[s] == null);
  if (missing.length > 0) {
    throw new Error(
      `${path} lacks ${missing.length} C API function(s) the binding calls: ${missing.join(", ")}`,
    );
  }
  const pointer = (library.symbols.TF_Version as () => Deno.PointerValue)();
  if (pointer == null) throw new Error(`${path}: TF_Version() returned NULL`);
  return new Deno.UnsafePointerView(pointer).getCString();
}

/** Runs a command, returns its output; throws with the tail of the output when it fails. */
async function run(
  command: string,
  args: string[],
  options: { cwd?: string; what: string },
): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(command, {
      args,
      cwd: options.cwd,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
  } catch (error) {
    throw new Error(`${options.what}: cannot run ${command}: ${error}`);
  }
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) {
    const tail = text.trim().split("\n").slice(-12).join("\n");
    throw new Error(`${options.what} failed (${command} exited with ${output.code}):\n${tail}`);
  }
  return text;
}

/** The tfjs-node package folder in the project's node_modules (its real path). */
export function nativePackageDir(pkg: string, projectDir: string): string {
  const require = createRequire(join(projectDir, "deno.json"));
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch {
    throw new Error(
      `${pkg} is not in ${projectDir}/node_modules: run \`deno install\` (it is listed in deno.json)` +
        (pkg.endsWith("-gpu") ? ` or \`deno add npm:${pkg}@${TFJS_NODE_VERSION}\`` : ""),
    );
  }
  return Deno.realPathSync(dirname(manifest));
}

/** Python statement printing the folder of an installed `tensorflow` package, without importing it. */
const FIND_TENSORFLOW_PY = "import importlib.util as u; s = u.find_spec('tensorflow'); " +
  "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";

async function pythonTensorflowDir(): Promise<string | undefined> {
  try {
    const out = (await run("python3", ["-c", FIND_TENSORFLOW_PY], { what: "python3" })).trim();
    const dir = out.split("\n").pop() ?? "";
    if (dir && await exists(join(dir, "libtensorflow_cc.so.2"))) return dir;
  } catch {
    // no python3, or no TensorFlow in it
  }
  return undefined;
}

/** `pip download` of the TensorFlow wheel (a GPU build is the plain `tensorflow` wheel). */
async function pipDownloadWheel(
  version: string,
  gpu: boolean,
  dir: string,
  log: (line: string) => void,
): Promise<string> {
  await ensureDir(dir);
  const project = gpu ? "tensorflow" : "tensorflow-cpu";
  const normalized = project.replace("-", "_");
  const cached = await findWheel(dir, normalized, version);
  if (cached) return cached;
  log(`fetching ${project}==${version} with pip download (pip's configured index)...`);
  // Few retries and a short timeout: an unreachable default index should fail over quickly.
  await run("python3", [
    "-m",
    "pip",
    "download",
    `${project}==${version}`,
    "--no-deps",
    "--only-binary=:all:",
    "--retries",
    "1",
    "--timeout",
    "15",
    "-d",
    dir,
  ], { what: `pip download ${project}==${version}` });
  const wheel = await findWheel(dir, normalized, version);
  if (!wheel) {
    throw new Error(`pip download reported success but no ${normalized} wheel is in ${dir}`);
  }
  return wheel;
}

async function findWheel(dir: string, normalized: string, version: string) {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(`${normalized}-${version}-`) && entry.name.endsWith(".whl")) {
      return join(dir, entry.name);
    }
  }
  return undefined;
}

/** Version in a wheel's file name (`tensorflow_cpu-2.21.0-cp311-...whl` -> `2.21.0`). */
export function wheelVersion(path: string): string {
  const match = /^tensorflow(?:_cpu|_gpu|_intel)?-([0-9][^-]*)-.*\.whl$/.exec(basename(path));
  if (!match) {
    throw new Error(
      `Cannot read ${path}: not a TensorFlow wheel name (tensorflow*-VERSION-...whl)`,
    );
  }
  return match[1];
}

/**
 * Python program extracting from a wheel (argv[1]) into argv[2]: the two libraries into `lib/`
 * and the C API headers into `include/`. Only the headers the binding includes are taken: the
 * whole include tree is 268 MB.
 */
const EXTRACT_WHEEL_PY = `
import sys, zipfile, os, shutil
wheel, out = sys.argv[1], sys.argv[2]
keep = ("tensorflow/c/", "tensorflow/core/platform/ctstring", "tsl/platform/ctstring",
        "xla/tsl/c/", "tensorflow/compiler/xla/tsl/c/")
libs = {"tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"}
found = set()
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        if name in libs:
            target = os.path.join(out, "lib", os.path.basename(name)); found.add(name)
        elif name.startswith("tensorflow/include/") and name[19:].startswith(keep):
            target = os.path.join(out, "include", name[19:])
        else:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
missing = libs - found
if missing:
    sys.exit("no " + ", ".join(sorted(missing)) + " in the wheel")
`;

/** Copies or extracts the library from `source` into the empty folder `out` (lib/, include/). */
async function extractLibrary(source: string, out: string): Promise<void> {
  const info = await Deno.stat(source).catch(() => {
    throw new Error(`Cannot read ${source}: no such file or folder`);
  });
  if (info.isFile && source.endsWith(".whl")) {
    await run("python3", ["-c", EXTRACT_WHEEL_PY, source, out], { what: `extract ${source}` });
    return;
  }
  if (info.isFile && /\.(tar\.gz|tgz)$/.test(source)) {
    // A libtensorflow tarball: lib/libtensorflow.so.2*, lib/libtensorflow_framework.so.2*, include/.
    await run("tar", ["-xzf", source, "-C", out], { what: `extract ${source}` });
    return;
  }
  if (info.isDirectory) {
    // An installed TensorFlow package (libtensorflow_cc.so.2 + include/) or an extracted tarball.
    const libDir = await exists(join(source, "lib", "libtensorflow.so.2"))
      ? join(source, "lib")
      : source;
    const includeDir = join(source, "include");
    if (!await exists(join(includeDir, "tensorflow", "c", "c_api.h"))) {
      throw new Error(`Cannot use ${source}: no include/tensorflow/c/c_api.h in it`);
    }
    const name = cApiLibraryName(libDir);
    await ensureDir(join(out, "lib"));
    for (const file of [name, "libtensorflow_framework.so.2"]) {
      await Deno.copyFile(join(libDir, file), join(out, "lib", file));
    }
    // The C API headers and the string header they include (not the 268 MB C++ tree).
    await ensureDir(join(out, "include", "tensorflow", "core", "platform"));
    await run(
      "cp",
      ["-r", join(includeDir, "tensorflow", "c"), join(out, "include", "tensorflow")],
      {
        what: `copy headers from ${includeDir}`,
      },
    );
    const platform = join(includeDir, "tensorflow", "core", "platform");
    const outPlatform = join(out, "include", "tensorflow", "core", "platform");
    if (await exists(platform)) {
      for await (const entry of Deno.readDir(platform)) {
        if (!entry.name.startsWith("ctstring")) continue;
        await Deno.copyFile(join(platform, entry.name), join(outPlatform, entry.name));
      }
    }
    return;
  }
  throw new Error(
    `Cannot use ${source}: expected a TensorFlow wheel (.whl), a libtensorflow tarball (.tar.gz) ` +
      "or a folder holding the C library",
  );
}

/** Link names the linker and the addon's RUNPATH look for, next to the real files. */
async function addLinkNames(libDir: string): Promise<void> {
  const main = cApiLibraryName(libDir);
  const links: Array<[string, string]> = [
    ["libtensorflow.so", main],
    ["libtensorflow_framework.so", "libtensorflow_framework.so.2"],
  ];
  // A tarball's libraries carry full versions (libtensorflow.so.2.9.1): give them .so.2 names.
  for await (const entry of Deno.readDir(libDir)) {
    const m = /^(libtensorflow(?:_framework)?\.so\.2)\.\d+\.\d+$/.exec(entry.name);
    if (m && !await exists(join(libDir, m[1]))) links.push([m[1], entry.name]);
  }
  for (const [link, target] of links) {
    if (link === target || await exists(join(libDir, link))) continue;
    await Deno.symlink(target, join(libDir, link));
  }
}

async function readTexts(dir: string, pattern: RegExp): Promise<string[]> {
  const texts: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = join(path, entry.name);
      if (entry.isDirectory) await walk(full);
      else if (pattern.test(entry.name)) texts.push(await Deno.readTextFile(full));
    }
  };
  await walk(dir);
  return texts;
}

/**
 * Stages the library of `source` into the cache (once per version and variant) and checks it.
 * Staging goes to a temporary folder renamed into place, so a failed or killed install leaves
 * nothing half-written behind.
 */
export async function stageLibrary(
  source: string,
  options: { cacheDir: string; packageDir: string; gpu: boolean; log: (line: string) => void },
): Promise<StagedLibrary> {
  const variant = options.gpu ? "gpu" : "cpu";
  const root = join(options.cacheDir, "native", "libtensorflow");
  await ensureDir(root);
  const symbolsFor = async (dir: string) =>
    requiredCApiSymbols(
      await readTexts(join(options.packageDir, "binding"), /\.(cc|h)$/),
      await readTexts(join(dir, "include", "tensorflow", "c"), /\.h$/),
    );
  // A wheel names its version: reuse a staged copy without extracting again.
  if (source.endsWith(".whl")) {
    const dir = join(root, `${wheelVersion(source)}-${variant}`);
    if (await exists(join(dir, "lib"))) {
      const version = checkLibrary(join(dir, "lib"), await symbolsFor(dir));
      return { dir, version, variant };
    }
  }
  const staging = await Deno.makeTempDir({ dir: root, prefix: ".staging-" });
  try {
    options.log(`staging the TensorFlow C library from ${source}...`);
    await extractLibrary(source, staging);
    await addLinkNames(join(staging, "lib"));
    const version = checkLibrary(join(staging, "lib"), await symbolsFor(staging));
    const dir = join(root, `${version}-${variant}`);
    if (await exists(dir)) {
      await Deno.remove(staging, { recursive: true });
    } else {
      await Deno.rename(staging, dir);
    }
    return { dir, version, variant };
  } catch (error) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw error;
  }
}

/** npm's bundled node-gyp, or one on the PATH. */
async function nodeGyp(): Promise<string[]> {
  try {
    const root = (await run("npm", ["root", "-g"], { what: "npm root -g" })).trim().split("\n")
      .pop()!;
    const script = join(root, "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
    if (await exists(script)) return ["node", script];
  } catch {
    // no npm
  }
  return ["node-gyp"];
}

/** `--nodedir` with Node's headers (Debian's are in /usr/include/node), or an error saying so. */
async function nodeHeadersDir(): Promise<string> {
  const candidates = ["/usr", "/usr/local"];
  try {
    const node = (await run("node", ["-p", "process.execPath"], { what: "node" })).trim();
    candidates.unshift(dirname(dirname(node)));
  } catch {
    throw new Error("Building the addon needs Node.js (node on the PATH) and its headers");
  }
  for (const dir of candidates) {
    if (await exists(join(dir, "include", "node", "node_api.h"))) return dir;
  }
  throw new Error(
    "Node.js headers not found (include/node/node_api.h): install them (Debian: the nodejs " +
      "package ships them; elsewhere `node-gyp install` downloads them)",
  );
}

/** Cache key of an addon: package version, library version and variant, N-API, machine. */
export function addonKey(pkg: string, library: StagedLibrary): string {
  const name = pkg.replace("@tensorflow/", "");
  return `${name}-${TFJS_NODE_VERSION}_tf-${library.version}-${library.variant}` +
    `_napi-${NAPI_BUILD_VERSION}_${Deno.build.os}-${Deno.build.arch}`;
}

/** Builds the addon against `library` in a scratch folder (cached by {@link addonKey}). */
async function buildAddon(
  packageDir: string,
  library: StagedLibrary,
  target: string,
  log: (line: string) => void,
): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "digitsum-addon-" });
  try {
    await run("cp", ["-r", join(packageDir, "binding"), join(scratch, "binding")], {
      what: "copy the binding sources",
    });
    await Deno.copyFile(join(packageDir, "binding.gyp"), join(scratch, "binding.gyp"));
    await Deno.symlink(library.dir, join(scratch, "deps"));
    const [command, ...prefix] = await nodeGyp();
    const nodedir = await nodeHeadersDir();
    const started = performance.now();
    log(`building the N-API addon with node-gyp (about 15 s)...`);
    await run(command, [
      ...prefix,
      "rebuild",
      `--nodedir=${nodedir}`,
      `--napi_build_version=${NAPI_BUILD_VERSION}`,
      "--module_name=tfjs_binding",
      `--module_path=${join(scratch, "out")}`,
    ], { cwd: scratch, what: "node-gyp rebuild" });
    log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    await ensureDir(dirname(target));
    await writeFileAtomic(target, await Deno.readFile(join(scratch, "out", "tfjs_binding.node")));
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** The C++ source of digitsum's own TensorFlow kernels. */
export const KERNELS_SOURCE = new URL("./native/digitsum_kernels.cc", import.meta.url).pathname;

/**
 * Builds digitsum's kernel library (lib/runtime/native/digitsum_kernels.cc) against `library`
 * into `dir`, named by a hash of its source so that an edited source is rebuilt; reuses a build
 * already there. A failure is logged, not thrown: training then runs on TensorFlow's own ops.
 *
 * @returns the library's path, or undefined when it could not be built
 */
async function buildKernelLibrary(
  library: StagedLibrary,
  dir: string,
  options: { force: boolean; log: (line: string) => void },
): Promise<string | undefined> {
  const source = await Deno.readFile(KERNELS_SOURCE);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", source));
  const hash = [...digest.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const target = join(dir, `digitsum_kernels-${hash}.so`);
  if (!options.force && await exists(target)) return target;
  const libDir = join(library.dir, "lib");
  const scratch = await Deno.makeTempDir({ prefix: "digitsum-kernels-" });
  try {
    const out = join(scratch, "digitsum_kernels.so");
    // -ffp-contract=off: every float32 operation rounds on its own, as TensorFlow's ops do.
    // -z nodelete: never unloaded (TensorFlow keeps the ops it registered; see the source).
    await run("g++", [
      "-O3",
      "-std=c++17",
      "-fPIC",
      "-shared",
      "-ffp-contract=off",
      "-pthread",
      KERNELS_SOURCE,
      "-o",
      out,
      `-L${libDir}`,
      "-l:libtensorflow_framework.so.2",
      `-Wl,-rpath,${libDir}`,
      "-Wl,-z,nodelete",
    ], { what: "build digitsum's kernels (g++)" });
    await ensureDir(dir);
    await writeFileAtomic(target, await Deno.readFile(out));
    options.log(`built digitsum's kernels (${target})`);
    return target;
  } catch (error) {
    options.log(
      `digitsum's kernels not built, training uses TensorFlow's own ops: ` +
        `${error instanceof Error ? error.message : error}`,
    );
    return undefined;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** Points the package's `deps` at the library and puts the addon where node-pre-gyp finds it. */
async function linkIntoPackage(
  packageDir: string,
  library: StagedLibrary,
  addon: string,
  kernels: string | undefined,
) {
  const deps = join(packageDir, "deps");
  const info = await Deno.lstat(deps).catch(() => null);
  if (info?.isSymlink && Deno.readLinkSync(deps) === library.dir) {
    // already linked
  } else {
    // A `deps` folder left by the package's own install script, or a link to another library.
    if (info) await Deno.remove(deps, { recursive: true });
    const temp = `${deps}.${Deno.pid}.tmp`;
    await Deno.remove(temp).catch(() => {});
    await Deno.symlink(library.dir, temp);
    await Deno.rename(temp, deps);
  }
  const binding = join(packageDir, "lib", `napi-v${NAPI_BUILD_VERSION}`, "tfjs_binding.node");
  await ensureDir(dirname(binding));
  await writeFileAtomic(binding, await Deno.readFile(addon));
  await Deno.chmod(binding, 0o755);
  await writeJsonAtomic(join(packageDir, "lib", "digitsum-native.json"), {
    library: library.dir,
    version: library.version,
    variant: library.variant,
    addon,
    kernels,
  });
}

/**
 * Finds a TensorFlow C library (in the order: `from`, an installed Python TensorFlow, a wheel
 * from `pip download`), stages it in the cache, builds or reuses the addon and links both into
 * the package in `node_modules`. The package's own download is left to the caller as the last
 * resort ({@link runPackageInstallScript}).
 */
export async function installNative(
  options: NativeInstallOptions = {},
): Promise<NativeInstallResult> {
  const started = performance.now();
  const log = options.log ?? ((line: string) => console.log(line));
  const gpu = options.gpu ?? false;
  const pkg = gpu ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
  const projectDir = options.projectDir ?? new URL("../../", import.meta.url).pathname;
  const cacheDir = options.cacheDir ?? digitsumCacheDir();
  const packageDir = nativePackageDir(pkg, projectDir);

  let source: LibrarySourceKind;
  let sourcePath: string;
  const python = options.from ? undefined : await pythonTensorflowDir();
  if (options.from) {
    source = "from";
    sourcePath = resolve(options.from);
  } else if (python && !gpu) {
    source = "python";
    sourcePath = python;
  } else {
    source = "pip";
    sourcePath = await pipDownloadWheel(
      options.tfVersion ?? DEFAULT_TF_VERSION,
      gpu,
      join(cacheDir, "native", "wheels"),
      log,
    );
  }
  log(`TensorFlow C library: ${describeSource(source)} (${sourcePath})`);
  const library = await stageLibrary(sourcePath, { cacheDir, packageDir, gpu, log });
  log(`TensorFlow ${library.version} (${library.variant}) in ${library.dir}`);

  const addonPath = join(cacheDir, "native", "addons", addonKey(pkg, library), "tfjs_binding.node");
  const built = options.force || !await exists(addonPath);
  if (built) await buildAddon(packageDir, library, addonPath, log);
  else log(`reusing the addon built earlier (${addonPath})`);
  const kernelLibrary = await buildKernelLibrary(library, dirname(addonPath), {
    force: options.force ?? false,
    log,
  });
  await linkIntoPackage(packageDir, library, addonPath, kernelLibrary);
  return {
    pkg,
    packageDir,
    source,
    sourcePath,
    library,
    built,
    addonPath,
    kernelLibrary,
    seconds: (performance.now() - started) / 1000,
  };
}

/** One phrase for each source kind. */
export function describeSource(kind: LibrarySourceKind): string {
  return {
    from: "given with --from",
    python: "the TensorFlow installed in python3",
    pip: "a wheel from pip's configured index",
    "package-download": "the package's own download",
  }[kind];
}

/**
 * Last resort: the package's own install script (downloads libtensorflow and a prebuilt addon
 * from Google's storage, or `TFJS_NODE_CDN_STORAGE`).
 */
export async function runPackageInstallScript(packageDir: string): Promise<void> {
  await run("node", [join(packageDir, "scripts", "install.js")], {
    cwd: packageDir,
    what: "the package's install script (scripts/install.js)",
  });
}

/** Removes what {@link installNative} linked into the package (the cache stays). */
export async function uninstallNative(packageDir: string): Promise<void> {
  for (
    const path of [
      "deps",
      join("lib", `napi-v${NAPI_BUILD_VERSION}`),
      join("lib", "digitsum-native.json"),
    ]
  ) {
    await Deno.remove(join(packageDir, path), { recursive: true }).catch(() => {});
  }
}
