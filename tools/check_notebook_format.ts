/**
 * `deno fmt --check` for the notebooks, done right. Deno 2.9.6's `fmt --check` reports every
 * `.ipynb` as unformatted until `deno fmt` has once written it (an empty diff; its notebook
 * formatter answers "changed" without a change, as denoland/deno#25840 was for YAML and HTML),
 * so deno.json excludes notebooks/ from `fmt` and this script does the check instead: each
 * notebook must equal what `deno fmt --ext ipynb -` makes of it, byte for byte.
 *
 * deno run -A tools/check_notebook_format.ts [FILES...]   (default: notebooks/*.ipynb)
 *
 * @module
 */
import { join } from "node:path";

async function formatted(path: string): Promise<{ same: boolean; error?: string }> {
  const original = await Deno.readFile(path);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "ipynb", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(original);
  await writer.close();
  const out = await child.output();
  if (!out.success) return { same: false, error: new TextDecoder().decode(out.stderr).trim() };
  const same = out.stdout.length === original.length &&
    out.stdout.every((byte, i) => byte === original[i]);
  return { same };
}

const root = new URL("../", import.meta.url).pathname;
const files = Deno.args.length > 0
  ? Deno.args
  : [...Deno.readDirSync(join(root, "notebooks"))].filter((e) => e.name.endsWith(".ipynb"))
    .map((e) => join(root, "notebooks", e.name)).sort();
let bad = 0;
for (const file of files) {
  const { same, error } = await formatted(file);
  if (!same) {
    bad += 1;
    // deno.json keeps notebooks/ out of `deno fmt`, so the fix goes through stdin as well.
    const fix = `deno fmt --ext ipynb - < ${file} > ${file}.tmp && mv ${file}.tmp ${file}`;
    console.error(`${file}: ${error ?? `not formatted (run: ${fix})`}`);
  }
}
console.log(`Checked ${files.length} notebook(s): ${bad} not formatted`);
Deno.exit(bad === 0 ? 0 : 1);
