/**
 * The CLIs' own inputs: numeric flags read by the shared parsers of lib/cli/args.ts (the same rules
 * and words in train, sweep, evaluate and predict), and data files that do not fit the task.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MAX_SEED,
  parseIntFlag,
  parseLimitFlag,
  parseListFlag,
  parsePositiveFlag,
  parseSeedFlag,
  parseSeedsFlag,
} from "../lib/cli/args.ts";
import { encodeNpy } from "../lib/io/npy.ts";
import { encodePng } from "../lib/io/png.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("parseIntFlag() takes plain digits within bounds and refuses everything else", () => {
  assert.equal(parseIntFlag(undefined, "epochs"), undefined);
  assert.equal(parseIntFlag("15", "epochs"), 15);
  assert.equal(parseIntFlag("0", "seed", { min: 0 }), 0);
  for (
    const bad of [
      "0",
      "-1",
      "1.5",
      "1e3",
      "0x10",
      " 3",
      "",
      "abc",
      "NaN",
      "Infinity",
      "9007199254740993",
    ]
  ) {
    assert.throws(
      () => parseIntFlag(bad, "epochs"),
      new RegExp(
        `^Error: --epochs must be a positive integer, got '${bad.replace(/[.+]/g, "\\$&")}'$`,
      ),
      bad,
    );
  }
  assert.throws(
    () => parseIntFlag("11", "x", { min: 1, max: 10 }),
    /--x must be an integer 1..10, got '11'/,
  );
});

Deno.test("parsePositiveFlag() takes decimal numbers above 0 only (never NaN)", () => {
  for (
    const [text, value] of [["0.001", 1e-3], ["1e-3", 1e-3], [".5", 0.5], ["3.", 3], [
      "2E+1",
      20,
    ]] as const
  ) {
    assert.equal(parsePositiveFlag(text, "lr"), value, text);
  }
  for (
    const bad of ["abc", "", "0", "0.0", "-1e-3", "NaN", "Infinity", "1e999", "0x1", " 1", "1,5"]
  ) {
    assert.throws(
      () => parsePositiveFlag(bad, "lr"),
      /^Error: --lr must be a positive number, got '/,
      bad,
    );
  }
});

Deno.test("parseLimitFlag(), parseSeedFlag(), parseSeedsFlag(), parseListFlag() agree on their rules", () => {
  assert.equal(parseLimitFlag("all", "limit"), null);
  assert.equal(parseLimitFlag("64", "limit"), 64);
  assert.throws(
    () => parseLimitFlag("0", "limit"),
    /--limit must be a positive integer or 'all', got '0'/,
  );
  assert.throws(() => parseLimitFlag("none", "limit"), /got 'none'/);
  assert.equal(parseSeedFlag("0"), 0);
  assert.equal(parseSeedFlag(String(MAX_SEED)), MAX_SEED);
  assert.throws(
    () => parseSeedFlag(String(MAX_SEED + 1)),
    /--seed must be an integer 0..4294967295/,
  );
  assert.throws(() => parseSeedFlag("-1"), /got '-1'/);
  assert.deepEqual(parseSeedsFlag("0, 10,42"), [0, 10, 42]);
  assert.throws(
    () => parseSeedsFlag("1,x"),
    /--seeds must be integers 0..4294967295, got 'x' in '1,x'/,
  );
  assert.deepEqual(parseListFlag("a, b,,c", "models"), ["a", "b", "c"]);
  assert.throws(() => parseListFlag(" , ", "models"), /--models needs a comma-separated list/);
});

/** Runs a CLI with arguments; returns its exit code and output. */
async function run(
  cli: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "cli", `${cli}.ts`), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", DIGITSUM_BACKEND: "wasm" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

Deno.test("train and sweep refuse the same bad numeric flags with the same words, before any work", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--lr", "abc"], /--lr must be a positive number, got 'abc'/],
    [["--limit", "0"], /--limit must be a positive integer or 'all', got '0'/],
    [["--epochs", "0"], /--epochs must be a positive integer, got '0'/],
    [["--batch-size=-4"], /--batch-size must be a positive integer, got '-4'/],
    [["--test-limit", "1.5"], /--test-limit must be a positive integer or 'all', got '1.5'/],
  ];
  for (const [args, pattern] of cases) {
    const [train, sweep] = await Promise.all([
      run("train", ["--model", "cnn-regressor", ...args]),
      run("sweep", ["--models", "cnn-regressor", ...args]),
    ]);
    for (const [name, result] of [["train", train], ["sweep", sweep]] as const) {
      assert.equal(result.code, 1, `${name} ${args.join(" ")}: ${result.err}`);
      assert.match(result.err, new RegExp(`^${name}: ${pattern.source}`), `${name} ${args}`);
      assert.doesNotMatch(result.out, /Config:|Sweep configuration|epoch/i, "nothing started");
    }
  }
  // --seed: the same range as the sweep's --seeds.
  const seed = await run("train", ["--model", "cnn-regressor", "--seed", "4294967296"]);
  assert.match(seed.err, /^train: --seed must be an integer 0..4294967295, got '4294967296'/);
});

Deno.test("evaluate and predict refuse bad flags and data that do not fit, naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "digitsum_cli_test_" });
  try {
    const images = join(dir, "images.npy");
    await Deno.writeFile(
      images,
      encodeNpy({ dtype: "uint8", shape: [3, 40, 168], data: new Uint8Array(3 * 6720) }),
    );
    const write = async (name: string, values: number[]) => {
      const path = join(dir, name);
      await Deno.writeFile(
        path,
        encodeNpy({ dtype: "float64", shape: [values.length], data: Float64Array.from(values) }),
      );
      return path;
    };
    const model = join(ROOT, "trained_models", "sumnet");
    const evaluate = (labels: string, ...more: string[]) =>
      run("evaluate", ["--model", model, "--images", images, "--labels", labels, ...more]);
    const outOfRange = await evaluate(await write("range.npy", [3, 37, 5]));
    assert.equal(outOfRange.code, 1);
    assert.match(
      outOfRange.err,
      /^evaluate: Cannot read .*range\.npy: label 1 is 37, not a sum of four digits \(an integer 0..36\)/,
    );
    const fraction = await evaluate(await write("fraction.npy", [3, 4.5, 5]));
    assert.match(fraction.err, /fraction\.npy: label 1 is 4.5, not a sum of four digits/);
    const count = await evaluate(await write("count.npy", [3, 4]));
    assert.match(count.err, /count\.npy: 2 labels for 3 images in .*images\.npy/);
    const batch = await evaluate(await write("good.npy", [3, 4, 5]), "--batch-size", "abc");
    assert.match(batch.err, /^evaluate: --batch-size must be a positive integer, got 'abc'/);
    // Images of another size: an .npy of the wrong shape is refused, a PNG of the wrong
    // channels converted, one that cannot hold a row of digits refused.
    const wrong = join(dir, "wrong.npy");
    await Deno.writeFile(
      wrong,
      encodeNpy({ dtype: "uint8", shape: [2, 28, 28], data: new Uint8Array(2 * 784) }),
    );
    const square = join(dir, "square.png");
    await Deno.writeFile(
      square,
      await encodePng(new Uint8Array(64 * 64).fill(200, 0, 500), 64, 64),
    );
    for (
      const [path, pattern] of [
        [
          wrong,
          /^predict: Cannot use .*wrong\.npy: expected uint8 images of shape \[N, 40, 168\], got uint8 \[2, 28, 28\]/,
        ],
        [
          square,
          /^predict: Cannot use .*square\.png: 64 x 64 px \(width\/height 1.00\) is not a row of four digits/,
        ],
      ] as const
    ) {
      const result = await run("predict", [path]);
      assert.equal(result.code, 1, result.err);
      assert.match(result.err, pattern);
    }
    const zero = await run("predict", [images, "--batch-size", "0"]);
    assert.match(zero.err, /^predict: --batch-size must be a positive integer, got '0'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
