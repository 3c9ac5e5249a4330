import { test } from "node:test";
import * as assert from "node:assert/strict";
import { expandPath, normalizeCodes, normalizeSeverity, readerFromObject, shapeSettings } from "../settings";

test("defaults give exactly the server's keys", () => {
  const s = shapeSettings(readerFromObject({}), true);
  assert.deepEqual(s, {
    enable: true,
    select: [],
    ignore: [],
    severity: {},
    live: { onSave: false, timeoutSeconds: 20, python: null },
    trusted: true,
    debounceMs: 0,
    logLevel: "info",
  });
});

test("user values are normalised and passed through", () => {
  const s = shapeSettings(
    readerFromObject({
      enable: false,
      select: ["gp1", " GP401 ", "", 7, "gp1"],
      ignore: "GP408, gp3",
      severity: { gp401: "Error", GP3: "information", GP1: "bogus", GP2: 3 },
      live: { onSave: true, timeoutSeconds: 5000, python: "${workspaceFolder}/.venv/bin/python" },
      debounceMs: "100",
      trace: { server: "verbose" },
    }),
    true,
    { workspaceFolder: "/ws", home: "/home/u" },
  );
  assert.equal(s.enable, false);
  assert.deepEqual(s.select, ["GP1", "GP401"]);
  assert.deepEqual(s.ignore, ["GP408", "GP3"]);
  assert.deepEqual(s.severity, { GP401: "error", GP3: "info" });
  assert.deepEqual(s.live, { onSave: true, timeoutSeconds: 600, python: "/ws/.venv/bin/python" });
  assert.equal(s.debounceMs, 100);
  assert.equal(s.logLevel, "debug");
});

test("an untrusted workspace never runs code", () => {
  const s = shapeSettings(readerFromObject({ "live.onSave": true, "live.python": "/x/python" }), false);
  assert.equal(s.trusted, false);
  assert.equal(s.live.onSave, false);
  assert.equal(s.live.python, null);
});

test("flat dotted keys are read like nested ones", () => {
  const r = readerFromObject({ "live.timeoutSeconds": 7 });
  assert.equal(r.get("live.timeoutSeconds", 20), 7);
  assert.equal(r.get("live.onSave", false), false);
  assert.equal(shapeSettings(r, true).live.timeoutSeconds, 7);
});

test("paths: ~, ${userHome}, ${workspaceFolder}, blanks", () => {
  const ctx = { workspaceFolder: "/ws", home: "/home/u" };
  assert.equal(expandPath("~/venv/bin/python", ctx), "/home/u/venv/bin/python");
  assert.equal(expandPath("${userHome}/p", ctx), "/home/u/p");
  assert.equal(expandPath(" ${workspaceFolder}/.venv/bin/python ", ctx), "/ws/.venv/bin/python");
  assert.equal(expandPath("   ", ctx), undefined);
  assert.equal(expandPath(undefined, ctx), undefined);
  assert.equal(expandPath("python3.11", ctx), "python3.11");
});

test("codes and severities drop junk", () => {
  assert.deepEqual(normalizeCodes(null), []);
  assert.deepEqual(normalizeCodes(["all", "partial-params"]), ["ALL", "partial-params"]);
  assert.deepEqual(normalizeSeverity(["error"]), {});
  assert.deepEqual(normalizeSeverity({ GP101: "warn", GP102: "none" }), { GP101: "warning", GP102: "off" });
});
