"""Pure static analysis: source text in, Findings out. Never imports pygls or torch."""

from gradpath.analysis.engine import analyze, AnalysisResult  # noqa: F401
from gradpath.analysis.findings import Finding, Fix, Edit, Related, Span  # noqa: F401
