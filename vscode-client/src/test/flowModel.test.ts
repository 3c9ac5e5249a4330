import { test } from "node:test";
import * as assert from "node:assert/strict";
import {
  barPercent,
  contentSecurityPolicy,
  flowBrief,
  FlowRow,
  FlowView,
  leafName,
  makeNonce,
  rowFindings,
  rowLabel,
  shapeText,
} from "../flowModel";

function row(over: Partial<FlowRow>): FlowRow {
  return {
    index: 0, name: "encoder.layers.0.weight", qualname: "encoder.layers.0.weight", owner: "encoder.layers.0",
    line: 14, shape: [32, 16], requires_grad: true, registered: true, grad: 0.05, grad_text: "0.05", grad_frac: 0.5,
    update: 0, update_text: "0", update_frac: 0, changed: false, optimizers: [], flags: ["no-optimizer", "unchanged"],
    findings: ["GP102:45:29"], ...over,
  };
}

test("bars: fraction of the track in percent, nothing for missing or non-positive values", () => {
  assert.equal(barPercent(0.5), 50);
  assert.equal(barPercent(1.7), 100);
  assert.equal(barPercent(0.04), 4);
  assert.equal(barPercent(0), 0);
  assert.equal(barPercent(null), 0);
  assert.equal(barPercent(Number.NaN), 0);
});

test("names and shapes of a row", () => {
  assert.equal(leafName(row({})), "weight");
  assert.equal(leafName(row({ name: "scale", owner: "" })), "scale");
  assert.equal(shapeText([32, 16]), "(32, 16)");
  assert.equal(shapeText([8]), "(8,)");
  assert.equal(shapeText(undefined), "");
});

test("a row's accessible label names its flags, its finding and its line", () => {
  const label = rowLabel(row({}));
  assert.equal(
    label,
    "encoder.layers.0.weight; gradient norm 0.05; relative update 0; in no optimizer; flags: no optimizer, unchanged; " +
      "subject of GP102; defined at line 14",
  );
  assert.match(rowLabel(row({ optimizers: ["Adam"], flags: [], findings: [], line: null })), /in Adam$/);
});

test("a row links to the findings it is the subject of", () => {
  const view = {
    findings: [
      { id: "GP102:45:29", code: "GP102", message: "m", line: 45 },
      { id: "GP401:50:4", code: "GP401", message: "n", line: 50 },
    ],
  } as unknown as FlowView;
  assert.deepEqual(rowFindings(view, row({})).map((f) => f.code), ["GP102"]);
});

test("the brief in a gradpath.confirm result", () => {
  assert.deepEqual(flowBrief({ gradientFlow: { available: true, summary: "3 of 13 tensors updated", tensors: 13, updated: 3 } }), {
    summary: "3 of 13 tensors updated", tensors: 13, updated: 3,
  });
  assert.equal(flowBrief({ gradientFlow: { available: false } }), undefined);
  assert.equal(flowBrief(undefined), undefined);
});

test("the webview's CSP allows only the nonce'd script and style, no network", () => {
  const nonce = makeNonce(() => 0.5);
  assert.equal(nonce.length, 32);
  assert.notEqual(makeNonce(), makeNonce());
  const csp = contentSecurityPolicy("https://file+.vscode-resource.vscode-cdn.net", nonce);
  assert.match(csp, /^default-src 'none'; /);
  assert.match(csp, new RegExp(`script-src 'nonce-${nonce}'(;|$)`));
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
});
