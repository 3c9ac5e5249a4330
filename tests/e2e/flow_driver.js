// Drives the "Gradient flow" view in a running code-server (headless Chromium, playwright-core) and
// reports what the real DOM shows, as JSON on the last line of stdout. test_gradient_flow.py starts
// code-server and asserts on the report.
//
//   node flow_driver.js '<json config>'
//   config: {url, file, shots, timeoutMs, revealRow, keyboardRow}
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(process.argv[2]);
const T = cfg.timeoutMs || 60000;
const report = { steps: [], shots: [], console: [] };
let shotNo = 0;

async function shot(page, name) {
  shotNo += 1;
  const file = path.join(cfg.shots, `${String(shotNo).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file });
  report.shots.push(file);
  return file;
}

async function openFile(page, name) {
  await page.keyboard.press("Control+KeyP");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(name);
  await page.locator(`.quick-input-widget .monaco-list-row[aria-label*="${name}"]`).first().waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  await page.locator(`.tab.active[aria-label*="${name}"]`).first().waitFor({ timeout: T });
}

/** Ctrl+G: the editor shows (and the DOM holds) that line. */
async function goToLine(page, line) {
  // The quick input can close between showing and typing (focus taken by the webview or a lens
  // refresh): open it again until the line is typed, within the usual time.
  const input = page.locator(".quick-input-widget input").first();
  const deadline = Date.now() + T;
  for (;;) {
    await page.keyboard.press("Control+KeyG");
    try {
      await input.waitFor({ state: "visible", timeout: 5000 });
      await input.fill(`:${line}`, { timeout: 5000 });
      break;
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      await page.keyboard.press("Escape");
      await page.waitForTimeout(300);
    }
  }
  await page.waitForTimeout(200);
  await page.keyboard.press("Enter");
  await page.waitForTimeout(300);
}

async function runCommand(page, title, pick) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first().waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  if (pick) {
    await page.waitForTimeout(400);
    await input.fill(pick);
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: pick }).first().waitFor({ timeout: T });
    await page.keyboard.press("Enter");
  }
}

async function statusText(page, re) {
  const deadline = Date.now() + T;
  let last = "";
  while (Date.now() < deadline) {
    last = (await page.locator("#workbench\\.parts\\.statusbar").first().innerText().catch(() => "")) || "";
    if (re.test(last)) {
      return last;
    }
    await page.waitForTimeout(250);
  }
  return last;
}

/** The editor's cursor as the status bar says it: "Ln 14, Col 1". */
async function cursor(page, want) {
  const loc = page.locator("#status\\.editor\\.selection").first();
  const deadline = Date.now() + T;
  let text = "";
  while (Date.now() < deadline) {
    text = ((await loc.innerText().catch(() => "")) || "").trim();
    if (!want || text.startsWith(want)) {
      break;
    }
    await page.waitForTimeout(200);
  }
  return text;
}

/** The webview's content frame: the one that holds our #root. */
async function flowFrame(page, needSummary = true) {
  const deadline = Date.now() + T;
  while (Date.now() < deadline) {
    for (const f of page.frames()) {
      const sel = needSummary ? "#summary" : "#root";
      if (await f.locator(sel).count().catch(() => 0)) {
        return f;
      }
    }
    await page.waitForTimeout(250);
  }
  throw new Error("the Gradient flow webview never showed its summary");
}

async function readView(frame) {
  return frame.evaluate(() => {
    const rows = Array.from(document.querySelectorAll("tr.tensor")).map((tr) => ({
      qualname: tr.dataset.qualname,
      flags: tr.dataset.flags ? tr.dataset.flags.split(" ") : [],
      subject: tr.classList.contains("subject"),
      links: Array.from(tr.querySelectorAll("a.finding-link")).map((a) => a.textContent),
      line: tr.dataset.line,
      tabindex: tr.getAttribute("tabindex"),
      aria: tr.getAttribute("aria-label"),
      text: tr.innerText.replace(/\s+/g, " ").trim(),
      gradBar: tr.querySelector("td.grad .fill") ? tr.querySelector("td.grad .fill").style.width : null,
    }));
    const groups = Array.from(document.querySelectorAll("tr.group")).map((tr) => tr.innerText.replace(/\s+/g, " ").trim());
    const csp = document.querySelector('meta[http-equiv="Content-Security-Policy"]');
    const scripts = Array.from(document.querySelectorAll("script")).map((s) => ({ src: s.getAttribute("src") || "", nonce: !!s.nonce }));
    const body = getComputedStyle(document.body);
    return {
      summary: document.getElementById("summary").textContent,
      title: document.querySelector("h1.title") ? document.querySelector("h1.title").textContent : "",
      legend: Array.from(document.querySelectorAll("ul.legend li")).map((li) => li.innerText.replace(/\s+/g, " ").trim()),
      rows,
      groups,
      csp: csp ? csp.getAttribute("content") : null,
      scripts,
      bodyClass: document.body.className,
      background: body.backgroundColor,
      foreground: body.color,
      httpRefs: document.documentElement.outerHTML.match(/https?:\/\/(?!file\+)[^"' )]+/g) || [],
    };
  });
}

async function scenario(page) {
  const fileName = path.basename(cfg.file);
  await openFile(page, fileName);
  await goToLine(page, cfg.findingLine);
  await page.locator(".editor-instance .monaco-editor .squiggly-warning").first().waitFor({ state: "attached", timeout: T });
  report.steps.push("opened");

  // 1. the live step from the code lens over the optimizer
  const runLens = page.locator(".monaco-editor .codelens-decoration a", { hasText: "Run one CPU step" }).first();
  await runLens.waitFor({ timeout: T });
  await shot(page, "code-lens");
  await runLens.click();
  report.statusAfterStep = await statusText(page, /live: \d+ confirmed/);

  // 2. the "Gradient flow" lens appears after the step; it opens the view beside the editor
  const flowLens = page.locator(".monaco-editor .codelens-decoration a", { hasText: "Gradient flow" }).first();
  await flowLens.waitFor({ timeout: T });
  report.flowLens = await flowLens.innerText();
  report.statusItem = await statusText(page, /Gradient flow/);
  await page.keyboard.press("Control+KeyB"); // the side bar closes: more room for the view
  await flowLens.click();
  let frame = await flowFrame(page);
  await page.waitForTimeout(500);
  report.panelTab = (await page.locator(".tab", { hasText: "Gradient flow" }).first().innerText().catch(() => "")).trim();
  report.dark = await readView(frame);
  await shot(page, "gradient-flow-dark");

  // 3. clicking a row reveals the line where that layer is built
  await frame.locator(`tr.tensor[data-qualname="${cfg.revealRow}"]`).first().click();
  report.cursorAfterClick = await cursor(page, `Ln ${cfg.revealLine},`);
  report.activeTab = (await page.locator(".tab.active").first().getAttribute("aria-label")) || "";
  await shot(page, "row-clicked-reveals-definition");

  // 4. the keyboard: focus another row, Enter
  frame = await flowFrame(page);
  const kRow = frame.locator(`tr.tensor[data-qualname="${cfg.keyboardRow}"]`).first();
  await kRow.focus();
  await page.keyboard.press("Enter");
  report.cursorAfterEnter = await cursor(page, `Ln ${cfg.keyboardLine},`);

  // 5. a finding's link goes to the finding
  frame = await flowFrame(page);
  await frame.locator("tr.tensor.subject a.finding-link").first().click();
  report.cursorAfterFindingLink = await cursor(page, `Ln ${cfg.findingLine},`);

  // 6. the command palette opens it too; then the light theme
  await runCommand(page, "Gradpath: Show Gradient Flow");
  frame = await flowFrame(page);
  // the user switches to the light theme (the theme picker would search the marketplace: no network here)
  await runCommand(page, "Preferences: Toggle between Light/Dark Themes");
  const deadline = Date.now() + T;
  while (Date.now() < deadline) {
    frame = await flowFrame(page);
    const cls = await frame.evaluate(() => document.body.className).catch(() => "");
    if (/vscode-light/.test(cls)) {
      break;
    }
    await page.waitForTimeout(250);
  }
  await page.waitForTimeout(500);
  report.light = await readView(frame);
  await shot(page, "gradient-flow-light");

  // 7. the hover over the finding links to the view
  await page.locator(".tab", { hasText: fileName }).first().click();
  await goToLine(page, cfg.findingLine);
  const sq = page.locator(".editor-instance .monaco-editor .squiggly-warning").first();
  await sq.waitFor({ state: "attached", timeout: T });
  const box = await sq.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  const hover = page.locator(".monaco-hover:not(.hidden)", { hasText: "GP102" }).first();
  await hover.waitFor({ state: "visible", timeout: T });
  await page.waitForTimeout(400);
  report.hoverLinks = await hover.locator("a").evaluateAll((as) => as.map((a) => ({ text: a.textContent, href: a.getAttribute("data-href") || a.getAttribute("href") || "" })));
  await shot(page, "hover-link");
}

(async () => {
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), "gp-chromium-"));
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    env: { ...process.env, XDG_CONFIG_HOME: userData, XDG_CACHE_HOME: userData, HOME: userData },
  });
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1800, height: 1000 } });
    page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" || /Content Security Policy/i.test(m.text())) {
        report.console.push(m.text().slice(0, 500));
      }
    });
    page.on("pageerror", (e) => report.console.push(`pageerror: ${String(e).slice(0, 500)}`));
    await page.goto(cfg.url, { timeout: T });
    await page.locator(`.explorer-folders-view .monaco-list-row[aria-label*="${path.basename(cfg.file)}"]`).first().waitFor({ timeout: T });
    await scenario(page);
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
