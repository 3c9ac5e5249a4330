"""Reads `# expect: GP102 GP401` comments from fixture files."""
from __future__ import annotations

import io
import re
import tokenize
from collections import Counter
from pathlib import Path

EXPECT = re.compile(r"#.*?\bexpect:\s*((?:GP\d{3}\s*)+)")


def expected(text: str) -> Counter:
    out: Counter = Counter()
    try:
        comments = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)
                    if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        comments = [(i, line[line.index("#"):]) for i, line in enumerate(text.splitlines(), 1) if "#" in line]
    for line, comment in comments:
        m = EXPECT.search(comment)
        if m:
            for code in m.group(1).split():
                out[(line, code)] += 1
    return out


def fixture_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
