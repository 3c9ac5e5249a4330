// Drives a running code-server in Debian's headless Chromium with playwright-core and reports what
// the real UI shows, as JSON, with a screenshot of every state. The pytest side (test_vscode.py)
// starts code-server and asserts on this report.
//
//   node vscode_driver.js '<json config>'
//   config: {url, file, shots, scenario: "main" | "bad-interpreter", timeoutMs}
// Prints one JSON object on the last line of stdout.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(process.argv[2]);
const T = cfg.timeoutMs || 60000;
const report = { scenario: cfg.scenario, steps: [], shots: [], console: [] };
let shotNo = 0;

function step(name, data) {
  report.steps.push({ name, t: Date.now(), ...data });
}

async function shot(page, name) {
  shotNo += 1;
  const file = path.join(cfg.shots, `${String(shotNo).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file });
  report.shots.push(file);
  return file;
}

const MOD = "Control";

async function openFile(page, name) {
  await page.keyboard.press(`${MOD}+KeyP`);
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(name);
  // Wait for the file to be the first pick before Enter.
  await page
    .locator(`.quick-input-widget .monaco-list-row[aria-label*="${name}"]`)
    .first()
    .waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  await page.locator(`.tab.active[aria-label*="${name}"]`).first().waitFor({ timeout: T });
}

/** The 1-based editor line under a bounding box, read from the line-number gutter. */
async function lineAt(page, box) {
  const cy = box.y + box.height / 2;
  return page.evaluate((y) => {
    const nums = Array.from(document.querySelectorAll(".editor-instance .monaco-editor .margin-view-overlays .line-numbers"));
    for (const n of nums) {
      const r = n.getBoundingClientRect();
      if (y >= r.top && y < r.bottom) {
        return parseInt(n.textContent.trim(), 10);
      }
    }
    return null;
  }, cy);
}

/** {line number: text} of the lines the editor shows (the DOM holds the visible lines only;
 * spaces are U+00A0), matched to the gutter's line numbers by position. */
async function editorLines(page) {
  return page.evaluate(() => {
    const nums = Array.from(document.querySelectorAll(".editor-instance .monaco-editor .margin-view-overlays .line-numbers")).map((n) => {
      const r = n.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, n: parseInt(n.textContent.trim(), 10) };
    });
    const out = {};
    for (const l of document.querySelectorAll(".editor-instance .monaco-editor .view-lines .view-line")) {
      const r = l.getBoundingClientRect();
      const y = r.top + r.height / 2;
      const hit = nums.find((x) => y >= x.top && y < x.bottom);
      if (hit) {
        out[hit.n] = l.textContent.replace(/\u00a0/g, " ");
      }
    }
    return out;
  });
}

async function squiggles(page, cls) {
  const loc = page.locator(`.editor-instance .monaco-editor .${cls}`);
  const n = await loc.count();
  const out = [];
  for (let i = 0; i < n; i++) {
    const box = await loc.nth(i).boundingBox();
    if (box) {
      out.push({ box, line: await lineAt(page, box) });
    }
  }
  return out;
}

async function statusBarItem(page) {
  const item = page.locator("#workbench\\.parts\\.statusbar .statusbar-item", { hasText: "Gradpath" }).first();
  await item.waitFor({ timeout: T });
  const a = item.locator("a, .statusbar-item-label").first();
  return {
    text: (await item.innerText()).trim(),
    ariaLabel: (await a.getAttribute("aria-label")) || (await item.getAttribute("aria-label")) || "",
    icons: await item.evaluate((el) => Array.from(el.querySelectorAll(".codicon")).map((c) => c.className)),
  };
}

async function waitStatus(page, re, textToo = false) {
  // textToo: wait for the visible text as well (the aria label can change a moment before it)
  const deadline = Date.now() + T;
  let last;
  while (Date.now() < deadline) {
    last = await statusBarItem(page);
    if (textToo ? re.test(last.text) : (re.test(last.ariaLabel) || re.test(last.text))) {
      return last;
    }
    await page.waitForTimeout(250);
  }
  return last;
}

/** Ctrl+Shift+M toggles: press it only when the Problems panel is not showing. */
async function showProblems(page) {
  if (!(await page.locator(".markers-panel").first().isVisible().catch(() => false))) {
    await page.keyboard.press(`${MOD}+Shift+KeyM`);
  }
  await page.locator(".markers-panel").first().waitFor({ state: "visible", timeout: T });
}

async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first().waitFor({ timeout: T });
  await page.keyboard.press("Enter");
}

async function mainScenario(page) {
  const fileName = path.basename(cfg.file);
  await openFile(page, fileName);
  step("opened", { file: fileName });

  // 1. the squiggle
  const sq = page.locator(".editor-instance .monaco-editor .squiggly-error").first();
  await sq.waitFor({ state: "attached", timeout: T });
  await page.waitForTimeout(300);
  report.errorSquiggles = await squiggles(page, "squiggly-error");
  report.warningSquiggles = await squiggles(page, "squiggly-warning");
  report.linesBefore = await editorLines(page);
  step("squiggle", { squiggles: report.errorSquiggles });
  await shot(page, "squiggle");

  // 2. the status bar (server running)
  report.statusRunning = await waitStatus(page, /running/);
  await page.locator("#workbench\\.parts\\.statusbar .statusbar-item", { hasText: "Gradpath" }).first().hover();
  await page.waitForTimeout(800);
  report.statusTooltip = (await page.locator(".monaco-hover:not(.hidden), .workbench-hover-container").allInnerTexts()).join("\n");
  await shot(page, "status-bar");
  await page.mouse.move(5, 5);

  // 3. the hover. The squiggle is measured again here: a code lens arriving after the first
  // measurement moves the line down, and the mouse would land on the lens instead. Hovering is
  // retried (away and back) until the hover shows or the time is up.
  const hover = page.locator(".monaco-hover:not(.hidden)", { hasText: "GP101" }).first();
  const hoverDeadline = Date.now() + T;
  let box;
  for (;;) {
    const now = await squiggles(page, "squiggly-error");
    box = (now[0] || report.errorSquiggles[0]).box;
    await page.mouse.move(5, 5);
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    try {
      await hover.waitFor({ state: "visible", timeout: Math.min(5000, Math.max(1, hoverDeadline - Date.now())) });
      break;
    } catch (e) {
      if (Date.now() >= hoverDeadline) throw e;
    }
  }
  await page.waitForTimeout(500);
  report.hoverText = await hover.innerText();
  step("hover", {});
  await shot(page, "hover");
  await page.mouse.move(5, 5);
  await page.keyboard.press("Escape");

  // 4. the Problems panel
  await showProblems(page);
  const row = page.locator(".markers-panel .monaco-list-row", { hasText: "GP101" }).first();
  await row.waitFor({ timeout: T });
  await page.waitForTimeout(300);
  report.problemRows = await page.locator(".markers-panel .monaco-list-row").evaluateAll((rows) =>
    rows.map((r) => ({ text: r.innerText.replace(/\s+/g, " ").trim(), aria: r.getAttribute("aria-label") || "" })),
  );
  report.problemCounts = (await page.locator("#status\\.problems").first().getAttribute("aria-label").catch(() => null)) || "";
  step("problems", {});
  await shot(page, "problems-panel");

  // 5. the live CPU step, from the command palette; the status bar shows its result
  await page.keyboard.press("Escape");
  await runCommand(page, "Gradpath: Confirm Findings with a Live CPU Step");
  report.statusLive = await waitStatus(page, /live: \d+ confirmed|live: .*not/, true);
  await page.waitForTimeout(300);
  report.problemRowsLive = await page.locator(".markers-panel .monaco-list-row").allInnerTexts();
  await shot(page, "live-step");

  // 6. the quick fix (the squiggle measured again: lenses may have moved its line)
  box = ((await squiggles(page, "squiggly-error"))[0] || { box }).box;
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.keyboard.press("Escape");
  await page.keyboard.press(`${MOD}+Period`);
  const actions = page.locator(".action-widget .monaco-list-row");
  await actions.first().waitFor({ timeout: T });
  await page.waitForTimeout(300);
  report.quickFixes = await actions.evaluateAll((rows) =>
    rows.map((r) => ({ text: r.innerText.replace(/\s+/g, " ").trim(), aria: r.getAttribute("aria-label") || "", cls: r.className })),
  );
  await shot(page, "quick-fix-menu");
  const wanted = report.quickFixes.findIndex((r) => /parameters\(\)/.test(r.text) && !/separator|group-header/.test(r.cls));
  report.quickFixChosen = wanted;
  if (wanted < 0) {
    throw new Error(`no quick fix mentions parameters(): ${JSON.stringify(report.quickFixes)}`);
  }
  // Focus the wanted row (whichever row VS Code focused first), then apply it with Enter.
  const focusedText = async () =>
    (await page.locator(".action-widget .monaco-list-row.focused").first().innerText().catch(() => "")) || "";
  for (let i = 0; i < report.quickFixes.length && !/parameters\(\)/.test(await focusedText()); i++) {
    await page.keyboard.press("ArrowDown");
  }
  report.quickFixApplied = await focusedText();
  await page.keyboard.press("Enter");
  await page
    .locator(".editor-instance .monaco-editor .view-lines", { hasText: "model.parameters()" })
    .first()
    .waitFor({ timeout: T });
  report.linesAfter = await editorLines(page);
  step("fixed", {});
  // The diagnostic goes away once the server re-analyses the edited text.
  await page.locator(".editor-instance .monaco-editor .squiggly-error").first().waitFor({ state: "detached", timeout: T });
  await row.waitFor({ state: "detached", timeout: T });
  report.errorSquigglesAfter = await squiggles(page, "squiggly-error");
  report.problemRowsAfter = await page.locator(".markers-panel .monaco-list-row").allInnerTexts();
  await shot(page, "after-fix");
  // The status bar's live part goes away with the finding it counted (the verdict no longer applies).
  {
    const deadline = Date.now() + T;
    report.statusAfter = await statusBarItem(page);
    while (/live:/.test(report.statusAfter.text) && Date.now() < deadline) {
      await page.waitForTimeout(250);
      report.statusAfter = await statusBarItem(page);
    }
    await shot(page, "status-after-fix");
  }

  // 7. a notebook: its Python cells get diagnostics through notebook document sync
  if (cfg.notebook) {
    await openFile(page, path.basename(cfg.notebook));
    const nbSquiggle = page.locator(".notebook-editor .cell-editor-container .monaco-editor .squiggly-error").first();
    await nbSquiggle.waitFor({ state: "attached", timeout: T });
    await page.waitForTimeout(500);
    report.notebookSquiggleCellText = await page.evaluate(() => {
      const sq = document.querySelector(".notebook-editor .cell-editor-container .monaco-editor .squiggly-error");
      const ed = sq && sq.closest(".monaco-editor");
      const r = sq.getBoundingClientRect();
      const y = r.top + r.height / 2;
      for (const l of ed.querySelectorAll(".view-lines .view-line")) {
        const lr = l.getBoundingClientRect();
        if (y >= lr.top && y < lr.bottom) {
          return l.textContent.replace(/\u00a0/g, " ");
        }
      }
      return null;
    });
    await showProblems(page);
    await page.locator(".markers-panel .monaco-list-row", { hasText: "bug.ipynb" }).first().waitFor({ timeout: T });
    await page.waitForTimeout(300);
    report.notebookProblemRows = await page.locator(".markers-panel .monaco-list-row").allInnerTexts();
    await shot(page, "notebook");
  }

  // 8. Check Whole Workspace: a file that was never opened shows up in the Problems panel
  if (cfg.unopened) {
    await runCommand(page, "Gradpath: Check Whole Workspace");
    await showProblems(page);
    await page.locator(".markers-panel .monaco-list-row", { hasText: cfg.unopened }).first().waitFor({ timeout: T });
    await page.waitForTimeout(300);
    report.workspaceProblemRows = await page.locator(".markers-panel .monaco-list-row").allInnerTexts();
    await shot(page, "check-workspace");
  }
}

async function badInterpreterScenario(page) {
  const fileName = path.basename(cfg.file);
  await openFile(page, fileName);
  step("opened", { file: fileName });
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "Gradpath" }).first();
  await toast.waitFor({ state: "visible", timeout: T });
  await page.waitForTimeout(300);
  report.notification = (await toast.innerText()).replace(/\s+/g, " ").trim();
  report.notificationButtons = await toast.locator(".monaco-button").allInnerTexts();
  report.statusError = await waitStatus(page, /error/);
  await shot(page, "interpreter-notification");

  // The button opens the setting.
  await toast.locator(".monaco-button", { hasText: "Open Setting" }).first().click();
  const setting = page.locator(".settings-editor .setting-item-contents", { hasText: "Interpreter" }).first();
  await setting.waitFor({ timeout: T });
  await page.waitForTimeout(500);
  report.settingsEditor = (await setting.innerText()).replace(/\s+/g, " ").trim();
  report.settingsSearch = await page
    .locator(".settings-editor .suggest-input-container .view-lines, .settings-editor .settings-header input")
    .first()
    .innerText()
    .catch(() => "");
  await shot(page, "interpreter-setting");

  // The extension is still alive: its command runs and its log says why.
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(">Gradpath: Show Output");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Gradpath: Show Output" }).first().waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  const out = page.locator(".part.panel .monaco-editor .view-lines", { hasText: "Interpreter" }).first();
  await out.waitFor({ timeout: T });
  await page.waitForTimeout(500);
  report.outputText = (await out.innerText()).replace(/\u00a0/g, " ");
  await shot(page, "output-channel");
  report.commandsFound = await (async () => {
    await page.keyboard.press("F1");
    await input.fill(">Gradpath:");
    await page.waitForTimeout(800);
    const rows = await page.locator(".quick-input-widget .monaco-list-row").allInnerTexts();
    await page.keyboard.press("Escape");
    return rows.map((r) => r.replace(/\s+/g, " ").trim());
  })();

  // Fixing the setting in the Settings editor restarts the server: it runs, the squiggle appears.
  if (cfg.goodPython) {
    const box = page.locator(".settings-editor .setting-item-contents", { hasText: "Interpreter" }).first().locator("input").first();
    await box.click();
    await box.fill(cfg.goodPython);
    await page.keyboard.press("Tab");
    report.statusRecovered = await waitStatus(page, /running/);
    await page.locator(".tab", { hasText: fileName }).first().click();
    await page.locator(".editor-instance .monaco-editor .squiggly-error").first().waitFor({ state: "attached", timeout: T });
    report.recoveredSquiggles = await squiggles(page, "squiggly-error");
    await shot(page, "recovered");
  }
}

async function untrustedScenario(page) {
  const fileName = path.basename(cfg.file);
  // the badge comes with the workbench's trust state, which can land after the page is up: wait for it
  report.restrictedBadge = await page.locator("#workbench\\.parts\\.statusbar", { hasText: "Restricted Mode" }).first()
    .waitFor({ state: "attached", timeout: 15000 }).then(() => true, () => false);
  await openFile(page, fileName);
  await page.locator(".editor-instance .monaco-editor .squiggly-error").first().waitFor({ state: "attached", timeout: T });
  report.errorSquiggles = await squiggles(page, "squiggly-error");
  report.statusRunning = await waitStatus(page, /running/);
  await shot(page, "restricted-mode-static-analysis");

  // The live step's command is not offered while untrusted.
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(">Gradpath:");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Gradpath: Restart Server" }).first().waitFor({ timeout: T });
  await page.waitForTimeout(500);
  report.commandsUntrusted = (await page.locator(".quick-input-widget .monaco-list-row").allInnerTexts()).map((r) => r.replace(/\s+/g, " ").trim());
  await shot(page, "restricted-mode-commands");
  await page.keyboard.press("Escape");

  // Trust the folder: the extension tells the server (no restart).
  await runCommand(page, "Workspaces: Manage Workspace Trust");
  const trustButton = page.locator(".workspace-trust-editor .monaco-button", { hasText: /^Trust$/ }).first();
  await trustButton.waitFor({ timeout: T });
  await trustButton.click();
  await page.locator(".workspace-trust-editor", { hasText: "trusted" }).first().waitFor({ timeout: T });
  await page.waitForTimeout(1500);
  report.restrictedBadgeAfter = (await page.locator("#workbench\\.parts\\.statusbar", { hasText: "Restricted Mode" }).count()) > 0;
  await shot(page, "trusted");
  await page.locator(".tab", { hasText: fileName }).first().click();
  await page.keyboard.press("F1");
  await input.fill(">Gradpath:");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Gradpath: Restart Server" }).first().waitFor({ timeout: T });
  await page.waitForTimeout(500);
  report.commandsTrusted = (await page.locator(".quick-input-widget .monaco-list-row").allInnerTexts()).map((r) => r.replace(/\s+/g, " ").trim());
  await page.keyboard.press("Escape");
}

async function pythonExtensionScenario(page) {
  const fileName = path.basename(cfg.file);
  await openFile(page, fileName);
  await page.locator(".editor-instance .monaco-editor .squiggly-error").first().waitFor({ state: "attached", timeout: T });
  report.statusFirst = await waitStatus(page, /running/);
  await shot(page, "python-extension-environment");
  // The user picks another environment: the server restarts on it.
  await runCommand(page, "Fake Python: Switch Environment");
  report.statusSwitched = await waitStatus(page, new RegExp(cfg.secondPython.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")));
  await page.locator(".editor-instance .monaco-editor .squiggly-error").first().waitFor({ state: "attached", timeout: T });
  report.errorSquiggles = await squiggles(page, "squiggly-error");
  await page.locator("#workbench\\.parts\\.statusbar .statusbar-item", { hasText: "Gradpath" }).first().hover();
  await page.waitForTimeout(800);
  await shot(page, "python-extension-switched");
}

(async () => {
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), "gp-chromium-"));
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    env: { ...process.env, XDG_CONFIG_HOME: userData, XDG_CACHE_HOME: userData, HOME: userData },
  });
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") {
        report.console.push(m.text().slice(0, 500));
      }
    });
    page.on("pageerror", (e) => report.console.push(`pageerror: ${String(e).slice(0, 500)}`));
    await page.goto(cfg.url, { timeout: T });
    await page
      .locator(`.explorer-folders-view .monaco-list-row[aria-label*="${path.basename(cfg.file)}"]`)
      .first()
      .waitFor({ timeout: T });
    step("workbench", {});
    await shot(page, "workbench");
    if (cfg.scenario === "main") {
      await mainScenario(page);
    } else if (cfg.scenario === "python-extension") {
      await pythonExtensionScenario(page);
    } else if (cfg.scenario === "untrusted") {
      await untrustedScenario(page);
    } else {
      await badInterpreterScenario(page);
    }
    report.ok = true;
  } catch (err) {
    report.ok = false;
    report.error = String(err && err.stack ? err.stack : err);
    if (page) {
      await shot(page, "failure").catch(() => {});
    }
  } finally {
    await browser.close().catch(() => {});
    fs.rmSync(userData, { recursive: true, force: true });
  }
  process.stdout.write("\n" + JSON.stringify(report) + "\n");
})();
