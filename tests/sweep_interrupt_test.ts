/**
 * The sweep's answer to SIGINT and SIGTERM (`interruptHandler` in lib/runtime/signals.ts), with an injected
 * clock and exit. A batch system or a terminal signals every process of a job or process group,
 * and `deno task sweep` passes the signal on to the sweep as well: the sweep gets each signal twice
 * within milliseconds (tests/slurm_test.ts sees it happen on a real cluster).
 */
import assert from "node:assert/strict";
import { interruptHandler, REPEAT_WINDOW_MS } from "../lib/runtime/signals.ts";

/** A handler with a clock the test moves, recording stops, exits and messages. */
function harness() {
  const seen = { stops: 0, exits: [] as number[], lines: [] as string[], now: 0 };
  const handle = interruptHandler(() => seen.stops++, {
    exit: (code) => seen.exits.push(code),
    now: () => seen.now,
    log: (line) => seen.lines.push(line),
  });
  return { seen, handle };
}

Deno.test("interruptHandler() stops after the epoch on the first SIGTERM and ignores its copy", () => {
  const { seen, handle } = harness();
  handle("SIGTERM");
  seen.now += 1; // deno task's forwarded copy, a millisecond later
  handle("SIGTERM");
  assert.equal(seen.stops, 1);
  assert.deepEqual(seen.exits, []);
  assert.equal(seen.lines.length, 1);
  assert.match(seen.lines[0], /SIGTERM: stopping after the current epoch/);
});

Deno.test("interruptHandler() never exits at once on further SIGTERMs", () => {
  const { seen, handle } = harness();
  handle("SIGTERM");
  for (const later of [REPEAT_WINDOW_MS, 10 * REPEAT_WINDOW_MS, 600_000]) {
    seen.now = later;
    handle("SIGTERM");
  }
  assert.equal(seen.stops, 1);
  assert.deepEqual(seen.exits, []);
});

Deno.test("interruptHandler() takes a Ctrl-C delivered twice for one", () => {
  const { seen, handle } = harness();
  handle("SIGINT");
  seen.now += REPEAT_WINDOW_MS - 1;
  handle("SIGINT");
  assert.equal(seen.stops, 1);
  assert.deepEqual(seen.exits, []);
  assert.match(seen.lines[0], /Press Ctrl-C again to quit at once/);
});

Deno.test("interruptHandler() exits with 130 on a second Ctrl-C after the window", () => {
  const { seen, handle } = harness();
  handle("SIGINT");
  seen.now += REPEAT_WINDOW_MS;
  handle("SIGINT");
  assert.equal(seen.stops, 1);
  assert.deepEqual(seen.exits, [130]);
  assert.match(seen.lines[1], /Second interrupt: exiting now/);
});

Deno.test("interruptHandler() exits on a Ctrl-C that follows a SIGTERM", () => {
  const { seen, handle } = harness();
  handle("SIGTERM");
  seen.now += 1;
  handle("SIGINT"); // within the window: the same interrupt
  assert.deepEqual(seen.exits, []);
  seen.now += 5_000;
  handle("SIGINT");
  assert.equal(seen.stops, 1);
  assert.deepEqual(seen.exits, [130]);
});
