import { test } from "node:test";
import * as assert from "node:assert/strict";
import { nextLive, statusBar, summarizeLive } from "../status";

test("status bar text for each state", () => {
  assert.equal(statusBar("running").text, "$(check) Gradpath");
  assert.equal(statusBar("starting").text, "$(loading~spin) Gradpath: starting");
  assert.equal(statusBar("error", undefined, "no python").text, "$(error) Gradpath: error");
  assert.match(statusBar("error", undefined, "no python").tooltip, /no python/);
  assert.equal(statusBar("stopped").text, "$(circle-slash) Gradpath: stopped");
});

test("the last live step shows next to the state", () => {
  const live = { confirmed: 2, notReproduced: 0, notRun: 1, file: "bug.py", reason: "needs network" };
  const s = statusBar("running", live);
  assert.equal(s.text, "$(check) Gradpath · live: 2 confirmed, 1 not run");
  assert.match(s.tooltip, /Last live CPU step \(bug.py\): 2 confirmed, 1 not run \(needs network\)/);
});

test("live results in the shapes a server may return", () => {
  assert.deepEqual(summarizeLive([{ verdict: "confirmed" }, { live: { verdict: "not-run", reason: "timed out" } }], "a.py"), {
    confirmed: 1, notReproduced: 0, notRun: 1, file: "a.py", reason: "timed out",
  });
  assert.deepEqual(summarizeLive({ uri: "file:///w/b.py", verdicts: { "GP101:22:23": { verdict: "not_reproduced" } } }), {
    confirmed: 0, notReproduced: 1, notRun: 0, file: "b.py", uri: "file:///w/b.py",
  });
  assert.equal(summarizeLive({ findings: [{ code: "GP101" }] }), undefined);
  assert.equal(summarizeLive(null), undefined);
  assert.equal(summarizeLive("done"), undefined);
});

test("the server's gradpath/status notification counts", () => {
  assert.deepEqual(
    summarizeLive({ state: "ready", live: { uri: "file:///w/my%20bug.py", confirmed: 1, "not-reproduced": 2, "not-run": 0, seconds: 1.2 } }),
    { confirmed: 1, notReproduced: 2, notRun: 0, file: "my bug.py", uri: "file:///w/my%20bug.py" },
  );
  assert.equal(summarizeLive({ state: "busy", message: "analysing" }), undefined);
  assert.equal(statusBar("running", undefined, undefined, "live step").text, "$(loading~spin) Gradpath: live step");
});

test("an outdated live result says so", () => {
  const live = summarizeLive({ state: "ready", live: { uri: "file:///w/a.py", confirmed: 1, "not-reproduced": 0, "not-run": 0, stale: true } });
  assert.equal(live?.stale, true);
  assert.equal(statusBar("running", live).text, "$(check) Gradpath · live: 1 confirmed (outdated)");
});

test("the live part resets when its finding goes away, for its own document only", () => {
  const a = "file:///w/a.py";
  const shown = nextLive(undefined, { state: "ready", live: { uri: a, confirmed: 1, "not-reproduced": 0, "not-run": 0 } });
  assert.equal(statusBar("running", shown).text, "$(check) Gradpath · live: 1 confirmed");
  // another document's verdicts going away change nothing here
  assert.equal(nextLive(shown, { state: "ready", live: { uri: "file:///w/b.py", cleared: true, update: true } }), shown);
  assert.equal(
    nextLive(shown, { state: "ready", live: { uri: "file:///w/b.py", confirmed: 0, "not-reproduced": 1, "not-run": 0, update: true } }),
    shown,
  );
  // a quick fix removed a.py's confirmed finding, another verdict still applies
  const fewer = nextLive(shown, { state: "ready", live: { uri: a, confirmed: 0, "not-reproduced": 1, "not-run": 0, update: true } });
  assert.equal(statusBar("running", fewer).text, "$(check) Gradpath · live: 1 not reproduced");
  // none applies any more: no live part at all
  assert.equal(nextLive(fewer, { state: "ready", live: { uri: a, cleared: true, update: true } }), undefined);
  assert.equal(statusBar("running", nextLive(shown, { state: "ready", live: { uri: a, cleared: true, update: true } })).text,
    "$(check) Gradpath");
  // nothing shown: an update does not bring a live part back; a new live step does
  assert.equal(nextLive(undefined, { state: "ready", live: { uri: a, confirmed: 1, update: true } }), undefined);
  assert.equal(nextLive(undefined, { state: "busy", message: "analysing" }), undefined);
  assert.equal(nextLive(shown, { state: "busy", message: "analysing" }), shown);
});
