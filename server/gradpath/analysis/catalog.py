"""The rule catalog: code, slug, default severity, group, texts and docs URL for every rule."""
from __future__ import annotations

from dataclasses import dataclass

from gradpath.analysis._catalog_table import RULES_TABLE

DOCS_BASE_URL = "https://github.com/gradpath/gradpath/blob/main/docs/rules/"

GROUPS = {
    "GP0": "syntax",
    "GP1": "parameters that never reach the optimizer",
    "GP2": "losses cut off from the graph",
    "GP3": "loss math that turns inf or NaN",
    "GP4": "training loops in the wrong order",
}

SYNTAX_ERROR = "GP000"


@dataclass(frozen=True)
class Rule:
    code: str
    slug: str
    severity: str  # default severity: error | warning | info
    catches: str
    behaviour: str
    fix: str

    @property
    def group(self) -> str:
        return GROUPS.get(self.code[:3], "")

    @property
    def docs_url(self) -> str:
        return f"{DOCS_BASE_URL}{self.code}.md"

    @property
    def title(self) -> str:
        return self.slug.replace("-", " ")


def _sev(s: str) -> str:
    # "warning/error" (GP305): the default is the milder one; the rule raises it when PyTorch raises.
    return s.split("/")[0]


RULES: dict[str, Rule] = {
    SYNTAX_ERROR: Rule(SYNTAX_ERROR, "syntax-error", "error",
                       "a file that does not parse; also a file whose analysis stopped at its CPU time "
                       "limit (the results for it are incomplete)",
                       "Python raises SyntaxError; Gradpath analyses the statements that do parse",
                       "fix the syntax (an incomplete analysis: raise GRADPATH_TIME_LIMIT_S)"),
}
for _code, _slug, _sev_s, _what, _real, _fix in RULES_TABLE:
    RULES[_code] = Rule(_code, _slug, _sev(_sev_s), _what, _real, _fix)


def get(code: str) -> Rule:
    return RULES[code]


def matches(code: str, patterns) -> bool:
    """`GP1`, `GP10`, `GP102` and the slug all select a code."""
    rule = RULES.get(code)
    for p in patterns:
        p = p.strip()
        if not p:
            continue
        if p.upper() == "ALL" or code.startswith(p.upper()) or (rule and p == rule.slug):
            return True
    return False
