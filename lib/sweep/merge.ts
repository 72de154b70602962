/**
 * Combining sweep folders (e.g. the shards of one grid) into one: `deno task sweep --merge`.
 *
 * @module
 */
import { join } from "node:path";
import { ensureDir, exists, writeJsonAtomic } from "../io/fsutil.ts";
import { assertSameData, readRunRecord, RUN_FILES, type RunRecord } from "../results/record.ts";
import { configDifference } from "../training/experiment.ts";
import { readSweepConfig, setupDifference, type SweepConfig, unionGrid } from "./config.ts";

/** Copy a directory tree (files and folders), leaving out top-level entries named in `skip`. */
async function copyTree(from: string, to: string, skip: readonly string[] = []): Promise<void> {
  await ensureDir(to);
  for await (const entry of Deno.readDir(from)) {
    if (skip.includes(entry.name)) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory) await copyTree(source, target);
    else if (entry.isFile) await Deno.copyFile(source, target);
  }
}

/** Whether two finished records describe the same result. */
function sameResult(a: RunRecord, b: RunRecord): string | undefined {
  const difference = configDifference(a.config, b.config);
  if (difference) return difference;
  if (a.status !== b.status) return `status ${a.status} vs ${b.status}`;
  if (JSON.stringify(a.accuracy) !== JSON.stringify(b.accuracy)) {
    return `accuracies differ (val ${a.accuracy?.val.accuracy} vs ${b.accuracy?.val.accuracy})`;
  }
  return undefined;
}

/**
 * Combine the outputs of several sweeps (e.g. shards) into `out`: run directories are copied
 * (without `state/`), `out/config.json` gets the union grid. Refuses, before copying anything,
 * when the inputs have different training setups or when the same run finished with different
 * results in two places (including `out` itself). Finished runs win over skipped or failed ones.
 *
 * @param inputs Sweep output directories.
 * @param out Target directory (may already hold a sweep with the same setup).
 * @returns The merged configuration.
 */
export async function mergeSweeps(
  inputs: readonly string[],
  out: string,
  options: { log?: (line: string) => void } = {},
): Promise<SweepConfig> {
  const log = options.log ?? console.log;
  if (inputs.length === 0) throw new Error("--merge needs at least one sweep directory");
  const configs: Array<{ dir: string; config: SweepConfig }> = [];
  for (const dir of inputs) {
    const config = await readSweepConfig(join(dir, "config.json"));
    if (!config) throw new Error(`Cannot merge ${dir}: ${join(dir, "config.json")} is missing`);
    configs.push({ dir, config });
  }
  const existing = await readSweepConfig(join(out, "config.json"));
  const all = existing ? [{ dir: out, config: existing }, ...configs] : configs;
  for (const { dir, config } of all.slice(1)) {
    const difference = setupDifference(all[0].config, config);
    if (difference) {
      throw new Error(
        `Cannot merge ${dir} with ${all[0].dir}: different training setups (${difference})`,
      );
    }
  }
  // Pick one record per run key; finished beats skipped/failed; two different finished refuse.
  const chosen = new Map<string, { dir: string; record: RunRecord }>();
  const conflicts: string[] = [];
  for (const { dir } of all) {
    const runsDir = join(dir, "runs");
    if (!(await exists(runsDir))) continue;
    const names: string[] = [];
    for await (const entry of Deno.readDir(runsDir)) if (entry.isDirectory) names.push(entry.name);
    for (const name of names.sort()) {
      const record = await readRunRecord(join(runsDir, name));
      if (!record) continue;
      const previous = chosen.get(name);
      if (!previous || (previous.record.status !== "done" && record.status === "done")) {
        chosen.set(name, { dir: join(runsDir, name), record });
      } else if (previous.record.status === "done" && record.status === "done") {
        const difference = sameResult(previous.record, record);
        if (difference) {
          conflicts.push(`${name}: ${previous.dir} vs ${join(runsDir, name)} (${difference})`);
        }
      }
    }
  }
  if (conflicts.length) {
    throw new Error(
      `Cannot merge: the same run finished with different results:\n  ${conflicts.join("\n  ")}`,
    );
  }
  assertSameData(
    [...chosen.values()].map((c) => c.record).filter((r) => r.status === "done"),
    `the runs of ${inputs.join(", ")}`,
  );
  let merged: SweepConfig = { ...all[0].config, out };
  for (const { config } of all.slice(1)) merged = { ...merged, ...unionGrid(merged, config) };
  await ensureDir(join(out, "runs"));
  let copied = 0;
  for (const [name, { dir }] of chosen) {
    const target = join(out, "runs", name);
    if (target === dir) continue;
    const tmp = `${target}.merge-${Deno.pid}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await copyTree(dir, tmp, [RUN_FILES.state]);
    await Deno.remove(target, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, target);
    copied += 1;
  }
  await writeJsonAtomic(join(out, "config.json"), merged);
  log(`Merged ${inputs.length} sweep(s) into ${out}: ${chosen.size} runs (${copied} copied)`);
  return merged;
}
