// The "Gradient flow" webview's script (bundled by esbuild into dist/flowView.js, loaded with the
// page's CSP nonce). It draws what the extension posts ({type: "view", answer}) with DOM calls only
// (text goes in as text, never as HTML), and posts back {type: "reveal", uri, line} when a row or a
// module is clicked or activated with Enter/Space, {type: "finding", id} for a finding's link,
// {type: "runStep"} from the empty state's button, and {type: "ready"} once it listens.
import {
  barPercent,
  FLAG_COLOUR,
  FLAG_SHORT,
  FlowAnswer,
  FlowGroup,
  FlowRow,
  FlowView,
  leafName,
  rowFindings,
  rowLabel,
  shapeText,
} from "../flowModel";

declare function acquireVsCodeApi(): { postMessage(msg: unknown): void; setState(s: unknown): void; getState(): unknown };

const vscode = acquireVsCodeApi();
const root = document.getElementById("root") as HTMLElement;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) {
    e.className = cls;
  }
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

function chip(flag: keyof typeof FLAG_SHORT): HTMLElement {
  const c = el("span", `flag flag-${flag}`, FLAG_SHORT[flag]);
  c.style.backgroundColor = FLAG_COLOUR[flag];
  return c;
}

function bar(frac: number | null, kind: "grad" | "update", text: string): HTMLElement {
  const cell = el("td", `bar-cell ${kind}`);
  const track = el("div", "track");
  const fill = el("div", "fill");
  fill.style.width = `${barPercent(frac)}%`;
  if (text === "nan" || text === "inf" || text === "-inf") {
    fill.style.backgroundColor = FLAG_COLOUR.nonfinite;
  }
  track.appendChild(fill);
  cell.appendChild(track);
  cell.appendChild(el("span", "value", text));
  return cell;
}

function reveal(loc: { uri: string; line: number } | null | undefined): void {
  if (loc) {
    vscode.postMessage({ type: "reveal", uri: loc.uri, line: loc.line });
  }
}

function activatable(tr: HTMLElement, onActivate: () => void): void {
  tr.tabIndex = 0;
  tr.addEventListener("click", (e) => {
    if ((e.target as HTMLElement).closest("a")) {
      return;
    }
    onActivate();
  });
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onActivate();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const all = Array.from(document.querySelectorAll<HTMLElement>("tr[tabindex='0']"));
      const i = all.indexOf(tr);
      const next = all[e.key === "ArrowDown" ? Math.min(all.length - 1, i + 1) : Math.max(0, i - 1)];
      next?.focus();
    }
  });
}

function groupRow(g: FlowGroup): HTMLElement {
  const tr = el("tr", "group");
  tr.dataset.path = g.path;
  const td = el("td");
  td.colSpan = 5;
  td.style.paddingLeft = `${6 + 14 * g.depth}px`;
  td.appendChild(el("span", "group-label", g.label));
  const extra: string[] = [];
  if (g.class && g.class !== g.label && !g.label.endsWith(`: ${g.class}`)) {
    extra.push(g.class);
  }
  if (g.line) {
    extra.push(`line ${g.line}`);
  }
  if (extra.length) {
    td.appendChild(el("span", "muted", ` ${extra.join(" · ")}`));
  }
  tr.appendChild(td);
  if (g.location) {
    tr.setAttribute("role", "button");
    tr.setAttribute("aria-label", `${g.path || g.label}${extra.length ? ", " + extra.join(", ") : ""}: go to its definition`);
    activatable(tr, () => reveal(g.location));
  }
  return tr;
}

function tensorRow(view: FlowView, r: FlowRow, depth: number): HTMLElement {
  const tr = el("tr", "tensor" + (r.findings.length ? " subject" : ""));
  tr.dataset.qualname = r.qualname;
  tr.dataset.flags = r.flags.join(" ");
  tr.dataset.line = r.line ? String(r.line) : "";
  tr.setAttribute("role", "button");
  tr.setAttribute("aria-label", rowLabel(r));
  tr.title = rowLabel(r);
  const name = el("td", "name");
  name.style.paddingLeft = `${6 + 14 * depth}px`;
  name.appendChild(el("span", "leaf", leafName(r)));
  name.appendChild(el("span", "muted shape", ` ${shapeText(r.shape)}`));
  tr.appendChild(name);
  const flags = el("td", "flags");
  r.flags.forEach((f) => flags.appendChild(chip(f)));
  for (const f of rowFindings(view, r)) {
    const a = el("a", "finding-link", f.code);
    a.href = "#";
    a.title = `${f.code} (line ${f.line}): ${f.message}`;
    a.setAttribute("aria-label", `go to ${f.code} at line ${f.line}`);
    a.addEventListener("click", (e) => {
      e.preventDefault();
      vscode.postMessage({ type: "finding", id: f.id });
    });
    flags.appendChild(a);
  }
  tr.appendChild(flags);
  tr.appendChild(bar(r.grad_frac, "grad", r.grad_text));
  tr.appendChild(bar(r.update_frac, "update", r.update_text));
  tr.appendChild(el("td", "opt", r.optimizers.join(", ") || "none"));
  activatable(tr, () => reveal(r.location));
  return tr;
}

function render(answer: FlowAnswer): void {
  root.replaceChildren();
  const view = answer.view;
  if (!answer.available || !view) {
    const empty = el("div", "empty");
    empty.appendChild(el("p", "summary", "No gradient flow to show yet."));
    empty.appendChild(el("p", "muted", answer.reason || ""));
    const btn = el("button", "run", "Run one CPU step");
    btn.addEventListener("click", () => vscode.postMessage({ type: "runStep", uri: answer.uri }));
    empty.appendChild(btn);
    root.appendChild(empty);
    return;
  }
  const head = el("header");
  head.appendChild(el("h1", "title", `Gradient flow: ${view.title}`));
  const summary = el("p", "summary", view.summary);
  summary.id = "summary";
  summary.setAttribute("role", "status");
  head.appendChild(summary);
  const meta = [`${view.steps} optimizer step(s)`, `${view.backward} backward call(s)`];
  if (view.mode) {
    meta.push(`mode: ${view.mode}`);
  }
  view.optimizers.forEach((o) => meta.push(`${o.label} at line ${o.line ?? "?"}: ${o.tensors ?? "?"} tensors`));
  (view.unused_roots ?? []).forEach((u) =>
    meta.push(`built but not used by this step: ${u.var ?? u.class} (${u.class}, line ${u.line ?? "?"}, ${u.tensors} tensors)`),
  );
  head.appendChild(el("p", "muted meta", meta.join(" · ")));
  const legend = el("ul", "legend");
  legend.setAttribute("aria-label", "legend");
  for (const item of view.legend) {
    const li = el("li");
    li.dataset.flag = item.flag;
    li.appendChild(chip(item.flag));
    li.appendChild(el("span", "muted", ` ${item.text} (${item.count})`));
    legend.appendChild(li);
  }
  const subj = el("li", "legend-subject");
  subj.appendChild(el("span", "subject-swatch", "row"));
  subj.appendChild(el("span", "muted", " subject of a finding (click its code to go there)"));
  legend.appendChild(subj);
  head.appendChild(legend);
  root.appendChild(head);

  const table = el("table", "flow");
  table.setAttribute("aria-label", `gradient flow of ${view.title}: one row per parameter tensor`);
  const thead = el("thead");
  const hr = el("tr");
  for (const [text, cls] of [
    ["tensor (module tree)", "name"],
    ["flags", "flags"],
    ["gradient norm (log)", "grad"],
    ["|Δw| / |w| after the step (log)", "update"],
    ["optimizer", "opt"],
  ]) {
    hr.appendChild(el("th", cls, text));
  }
  thead.appendChild(hr);
  table.appendChild(thead);
  const tbody = el("tbody");
  for (const it of view.items) {
    if (it.type === "group") {
      tbody.appendChild(groupRow(it));
    } else {
      tbody.appendChild(tensorRow(view, view.rows[it.index], it.depth));
    }
  }
  table.appendChild(tbody);
  root.appendChild(table);
  if (view.truncated) {
    root.appendChild(el("p", "muted", "The table was cut at its first 400 tensors."));
  }
}

window.addEventListener("message", (e: MessageEvent) => {
  const msg = e.data as { type?: string; answer?: FlowAnswer };
  if (msg && msg.type === "view" && msg.answer) {
    render(msg.answer);
    vscode.setState(msg.answer);
  }
});

const saved = vscode.getState() as FlowAnswer | undefined;
if (saved) {
  render(saved);
}
vscode.postMessage({ type: "ready" });
