import assert from "node:assert/strict";
import {
  barChart,
  confusionMatrix,
  findFont,
  FontNotFoundError,
  heatmap,
  imageGrid,
  lineChart,
  renderChart,
  svgToPng,
} from "../lib/results/charts.ts";
import { decodePng } from "../lib/io/png.ts";
import { dataUri } from "../lib/io/text.ts";

/** Text of every <text> element (ECharts writes labels as text nodes). */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

Deno.test("lineChart() draws one path per series with title, legend and axis names", () => {
  const svg = lineChart([
    { name: "seed 0", y: [30, 20, 15] },
    { name: "seed 42", y: [31, 22, 14] },
  ], { title: "Loss", xLabel: "epoch", yLabel: "train loss", width: 500, height: 300 });
  assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /width="500" height="300"/);
  const labels = texts(svg);
  for (const text of ["Loss", "seed 0", "seed 42", "epoch", "train loss"]) {
    assert.ok(labels.includes(text), `missing text '${text}' in ${labels.join("|")}`);
  }
  // Two data lines in the two palette colours.
  assert.ok(svg.includes('stroke="#0072B2"') && svg.includes('stroke="#E69F00"'));
});

Deno.test("lineChart() rejects an empty series list", () => {
  assert.throws(() => lineChart([]), /no series/);
});

Deno.test("barChart() labels bars with values and units, and draws error whiskers", () => {
  const svg = barChart(["CNN Regressor", "CNN Classifier"], [
    { name: "val", values: [11.0, 7.47], errors: [0.39, 0.68] },
    { name: "train", values: [20.76, null] },
  ], { yUnit: "%", title: "Accuracy" });
  const labels = texts(svg);
  for (const text of ["11.00%", "7.47%", "20.76%", "CNN Regressor", "Accuracy"]) {
    assert.ok(labels.includes(text), `missing text '${text}' in ${labels.join("|")}`);
  }
  assert.ok(!labels.includes("null") && !labels.some((t) => t.includes("NaN")));
  // Two whiskers (only the first series has errors), three strokes each.
  assert.equal((svg.match(/stroke="#222"/g) ?? []).length, 6);
});

Deno.test("barChart() rejects a series of the wrong length", () => {
  assert.throws(
    () => barChart(["a", "b"], [{ name: "s", values: [1] }]),
    /series 's' has 1 values for 2 categories/,
  );
});

Deno.test("confusionMatrix() counts true x predicted and clamps out-of-range predictions", () => {
  const m = confusionMatrix([0, 1, 1, 5, -2], [0, 1, 2, 2, 0], 3);
  assert.deepEqual(m, [[2, 0, 0], [0, 1, 0], [0, 1, 1]]);
  assert.throws(() => confusionMatrix([0], [3], 3), /label 3 at index 0 is outside 0..2/);
  assert.throws(() => confusionMatrix([0, 1], [0], 3), /2 predictions for 1 labels/);
});

Deno.test("heatmap() writes cell counts and rejects ragged rows", () => {
  const svg = heatmap([[5, 0], [1, 7]], { title: "Confusion", xLabel: "predicted" });
  const labels = texts(svg);
  for (const text of ["5", "1", "7", "Confusion", "predicted"]) {
    assert.ok(labels.includes(text), `missing text '${text}'`);
  }
  assert.throws(() => heatmap([[1, 2], [3]]), /row 1 has 1 cells, row 0 has 2/);
  assert.throws(() => heatmap([]), /empty matrix/);
});

Deno.test("renderChart() renders a raw ECharts option and rejects a bad size", () => {
  const svg = renderChart({
    xAxis: { type: "category", data: ["a"] },
    yAxis: {},
    series: [{ type: "bar", data: [3] }],
  }, { width: 200, height: 100 });
  assert.match(svg, /viewBox="0 0 200 100"/);
  assert.throws(() => renderChart({}, { width: 0 }), /invalid size 0x400/);
});

Deno.test("imageGrid() embeds each image as a PNG data URI with its caption", async () => {
  const pixels = new Uint8Array(4 * 6).map((_, i) => i * 10);
  const svg = await imageGrid([
    { pixels, width: 6, height: 4, caption: "sum 3 · predicted 3" },
    { pixels, width: 6, height: 4, caption: "a<b" },
  ], { title: "Samples", columns: 2, scale: 3 });
  const uris = [...svg.matchAll(/ href="(data:image\/png;base64,[^"]+)"/g)].map((m) => m[1]);
  assert.equal(uris.length, 2);
  const png = Uint8Array.from(atob(uris[0].split(",")[1]), (c) => c.charCodeAt(0));
  const decoded = await decodePng(png);
  assert.equal(decoded.width, 6);
  assert.deepEqual(Array.from(decoded.data), Array.from(pixels));
  assert.ok(svg.includes("a&lt;b"), "captions are XML-escaped");
  assert.equal(dataUri(new Uint8Array([1, 2, 3])), "data:image/png;base64,AQID");
});

Deno.test({
  name: "svgToPng() rasterises a chart at the requested scale",
  ignore: !findFont(), // no font file on this machine: PNG output is unavailable by design
}, async () => {
  const svg = lineChart([{ name: "a", y: [1, 2, 3] }], { width: 300, height: 200, title: "T" });
  const image = await decodePng(await svgToPng(svg, { scale: 2 }));
  assert.equal(image.width, 600);
  assert.equal(image.height, 400);
  // Not blank: some pixels are dark (text, axes), most are the white background.
  let dark = 0;
  for (let i = 0; i < image.data.length; i += image.channels) if (image.data[i] < 128) dark++;
  const pixels = image.width * image.height;
  assert.ok(dark > 200 && dark < pixels / 4, `${dark} dark pixels of ${pixels}`);
});

Deno.test("svgToPng() names the missing font file and how to get one", async () => {
  await assert.rejects(
    () => svgToPng("<svg xmlns='http://www.w3.org/2000/svg'/>", { fontPath: "/nonexistent/x.ttf" }),
    (error: Error) => {
      assert.ok(error instanceof FontNotFoundError);
      assert.match(error.message, /Cannot read font \/nonexistent\/x.ttf: file not found/);
      assert.match(error.message, /fonts-dejavu-core|DIGITSUM_FONT/);
      return true;
    },
  );
});

Deno.test("barChart() writes every category name, at a slant when they do not fit", () => {
  const names = Array.from({ length: 16 }, (_, i) => `condition-${String(i).padStart(2, "0")}`);
  const wide = barChart(names, [{ name: "a", values: names.map((_, i) => 50 + i) }], {
    labels: false,
  });
  for (const name of names) assert.ok(wide.includes(`>${name}<`), `${name} is missing`);
  // A 30-degree turn: matrix(cos, -sin, sin, cos, x, y).
  const slanted = /matrix\(0\.866,-0\.5,0\.5,0\.866,[\d.]+,[\d.]+\)" fill="[^"]*">condition-/g;
  assert.equal(wide.match(slanted)?.length, 16, "16 long names in 720 px are slanted");
  const few = barChart(["a", "b", "c"], [{ name: "s", values: [1, 2, 3] }]);
  assert.doesNotMatch(few, /matrix\(0\.866,-0\.5/, "three short names stay level");
});
