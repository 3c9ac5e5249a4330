import re
from pathlib import Path

from gradpath.analysis import catalog
from gradpath.analysis.rules import registered_codes


def test_codes_unique_and_well_formed():
    codes = [r.code for r in catalog.RULES.values()]
    assert len(codes) == len(set(codes))
    slugs = [r.slug for r in catalog.RULES.values()]
    assert len(slugs) == len(set(slugs))
    for r in catalog.RULES.values():
        assert re.fullmatch(r"GP\d{3}", r.code)
        assert r.severity in ("error", "warning", "info")


def test_registered_checkers_declare_known_codes():
    for name, codes in registered_codes():
        assert codes, name
        for c in codes:
            assert c in catalog.RULES, (name, c)
