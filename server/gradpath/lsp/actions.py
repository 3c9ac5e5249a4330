"""Code actions, built from what the diagnostics carry (`diagnostic.data`), never re-analysing.

- one QuickFix per fix of a Gradpath diagnostic (the finding's preferred fix marked preferred);
- "Disable GPxxx for this line": appends `  # gradpath: ignore[GPxxx]`, or extends the
  `# gradpath: ignore[...]` / `# noqa: ...` directive already on the line;
- "Confirm with a live CPU step" (command `gradpath.confirm`), only where execution is allowed;
- `source.fixAll.gradpath`: every safe fix of the document at once, skipping overlapping edits.
"""
from __future__ import annotations

import io
import re
import tokenize
from typing import Iterable

from lsprotocol import types

from gradpath.lsp.convert import SOURCE, range_from_dict

FIX_ALL_KIND = "source.fixAll.gradpath"
CONFIRM_COMMAND = "gradpath.confirm"

_DIRECTIVE = re.compile(r"(#\s*gradpath:\s*ignore\[)([^\]]*)(\])", re.I)
_BARE_DIRECTIVE = re.compile(r"#\s*gradpath:\s*ignore(?!\[)", re.I)
_NOQA = re.compile(r"(#\s*noqa:\s*)([A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*)", re.I)


def kind_wanted(kind: str, only: list[str] | None) -> bool:
    if not only:
        return True
    return any(kind == o or kind.startswith(o + ".") for o in only)


def _edits_to_workspace_edit(edits: Iterable[dict]) -> types.WorkspaceEdit:
    changes: dict[str, list[types.TextEdit]] = {}
    for e in edits:
        changes.setdefault(e["uri"], []).append(
            types.TextEdit(range=range_from_dict(e["range"]), new_text=e["newText"]))
    return types.WorkspaceEdit(changes=changes)


def _gp_data(diag: types.Diagnostic) -> dict | None:
    if diag.source != SOURCE or not isinstance(diag.data, dict):
        return None
    return diag.data


def quick_fixes(diag: types.Diagnostic) -> list[types.CodeAction]:
    data = _gp_data(diag)
    if data is None:
        return []
    fixes = [f for f in data.get("fixes") or [] if f.get("edits")]
    # isPreferred lets editors apply a fix without asking (VS Code's auto-fix): only ever a safe one.
    has_preferred = any(f.get("preferred") and f.get("safe") for f in fixes)
    first_safe = next((i for i, f in enumerate(fixes) if f.get("safe")), None)
    out = []
    for i, fx in enumerate(fixes):
        preferred = bool(fx.get("safe")) and (bool(fx.get("preferred")) or (not has_preferred and i == first_safe))
        title = fx.get("title") or "Apply Gradpath fix"
        if not fx.get("safe"):
            title += " (unsafe: review)"
        out.append(types.CodeAction(
            title=f"{data.get('code', '')}: {title}" if data.get("code") else title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[diag],
            edit=_edits_to_workspace_edit(fx["edits"]),
            is_preferred=preferred or None,
        ))
    return out


def _line_in_string(text_lines: list[str], line0: int) -> bool:
    """True if the end of the 0-based line is inside a multi-line string (a comment there would
    change the string)."""
    src = "\n".join(text_lines) + "\n"
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.STRING and tok.start[0] - 1 <= line0 < tok.end[0] - 1:
                return True
            if tok.start[0] - 1 > line0:
                break
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return False
    return False


def disable_for_line(diag: types.Diagnostic, uri: str, lines: list[str], encoding_units) -> types.CodeAction | None:
    """`lines`: the document's current lines; `encoding_units(line_text, char_col)` -> client units."""
    data = _gp_data(diag)
    if data is None:
        return None
    code = str(data.get("code") or diag.code or "")
    if not code or code == "GP000":
        return None
    line0 = diag.range.start.line
    if not 0 <= line0 < len(lines):
        return None
    text = lines[line0]
    if _line_in_string(lines, line0):
        return None
    title = f"Disable {code} for this line"
    m = _DIRECTIVE.search(text)
    if m is not None:
        codes = [c.strip() for c in re.split(r"[\s,]+", m.group(2)) if c.strip()]
        if code in [c.upper() for c in codes]:
            return None
        new_inner = ", ".join(codes + [code])
        start, end = m.start(2), m.end(2)
        edit = types.TextEdit(range=types.Range(
            start=types.Position(line=line0, character=encoding_units(text, start)),
            end=types.Position(line=line0, character=encoding_units(text, end))), new_text=new_inner)
    elif _BARE_DIRECTIVE.search(text):
        return None  # already suppresses everything
    elif (m := _NOQA.search(text)) is not None:
        end = m.end(2)
        edit = types.TextEdit(range=types.Range(
            start=types.Position(line=line0, character=encoding_units(text, end)),
            end=types.Position(line=line0, character=encoding_units(text, end))), new_text=f", {code}")
    else:
        stripped = text.rstrip()
        pos = encoding_units(text, len(stripped))
        end = encoding_units(text, len(text))
        edit = types.TextEdit(range=types.Range(start=types.Position(line=line0, character=pos),
                                                end=types.Position(line=line0, character=end)),
                              new_text=f"  # gradpath: ignore[{code}]")
    return types.CodeAction(title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                            edit=types.WorkspaceEdit(changes={uri: [edit]}))


def confirm_action(diag: types.Diagnostic, uri: str) -> types.CodeAction | None:
    data = _gp_data(diag)
    if data is None or data.get("code") == "GP000":
        return None
    return types.CodeAction(
        title=f"Confirm {data.get('code')} with a live CPU step",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[diag],
        command=types.Command(title="Confirm with a live CPU step", command=CONFIRM_COMMAND,
                              arguments=[uri, data.get("id")]),
    )


def _pos_key(p: dict) -> tuple[int, int]:
    return int(p["line"]), int(p["character"])


def _overlaps(a, b) -> bool:
    """(uri, start, end) edits that cannot both apply: intersecting ranges, an insertion strictly
    inside a replaced range, or two insertions at the same point (their order is ambiguous)."""
    if a[0] != b[0]:
        return False
    s1, e1, s2, e2 = a[1], a[2], b[1], b[2]
    if s1 == e1 and s2 == e2:
        return s1 == s2
    if s1 == e1:
        return s2 < s1 < e2
    if s2 == e2:
        return s1 < s2 < e1
    return s1 < e2 and s2 < e1


def fix_all_edits(diagnostic_datas: Iterable[dict]) -> list[dict]:
    """The safe fixes of every finding (the preferred safe fix when a finding has several), minus
    any fix whose edits overlap an edit already taken."""
    taken: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
    out: list[dict] = []
    for data in diagnostic_datas:
        fixes = [f for f in data.get("fixes") or [] if f.get("safe") and f.get("edits")]
        if not fixes:
            continue
        fx = next((f for f in fixes if f.get("preferred")), fixes[0])
        spans = [(e["uri"], _pos_key(e["range"]["start"]), _pos_key(e["range"]["end"])) for e in fx["edits"]]

        if any(_overlaps(s, t) for s in spans for t in taken):
            continue
        taken.extend(spans)
        out.extend(fx["edits"])
    return out


def fix_all_action(diagnostic_datas: list[dict]) -> types.CodeAction | None:
    edits = fix_all_edits(diagnostic_datas)
    if not edits:
        return None
    return types.CodeAction(title="Gradpath: fix all safe problems", kind=FIX_ALL_KIND,
                            edit=_edits_to_workspace_edit(edits))
