import { encodeNpy } from "./lib/npy.ts";
import { readNpy } from "./lib/npy.ts";
const test = await readNpy("data/test_data.npy");
const n = Number(Deno.args[0]);
const data = new Uint8Array(n * 6720);
const src = test.data as Uint8Array;
for (let i = 0; i < n; i++) data.set(src.subarray((i % 10000) * 6720, (i % 10000 + 1) * 6720), i * 6720);
await Deno.writeFile(Deno.args[1], encodeNpy({ dtype: "uint8", shape: [n, 40, 168], data }));
