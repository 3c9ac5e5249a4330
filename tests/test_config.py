"""[tool.gradpath] / gradpath.toml: discovery, every key, clear warnings for bad keys and values,
and editor settings overriding the project."""
import textwrap
from pathlib import Path

from gradpath.analysis.engine import Options
from gradpath.projectconfig import (ProjectConfig, find_config_file, glob_match, load_config_file,
                                    load_project_config, merge_options, options_for_file)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


FULL = """\
    [project]
    name = "demo"

    [tool.gradpath]
    select = ["GP1", "GP4"]
    ignore = ["GP408"]
    exclude = ["build", "legacy/**/*.py"]

    [tool.gradpath.severity]
    GP4 = "error"
    GP401 = "info"
    partial-params = "error"

    [tool.gradpath.per-file-ignores]
    "tests/**" = ["GP1"]
    "scripts/*.py" = ["GP401", "GP402"]

    [tool.gradpath.live]
    timeout-seconds = 30
    memory-mb = 2048
    """


def test_full_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", FULL)
    f = write(tmp_path / "pkg" / "train.py", "x = 1\n")
    cfg, warnings = load_project_config(f)
    assert warnings == []
    assert cfg.path == tmp_path / "pyproject.toml"
    assert cfg.select == ["GP1", "GP4"] and cfg.ignore == ["GP408"]
    assert cfg.severity == {"GP4": "error", "GP401": "info", "GP102": "error"}
    assert cfg.live.timeout_seconds == 30.0 and cfg.live.memory_mb == 2048
    opts = cfg.options_for(f)
    assert opts.select == ["GP1", "GP4"] and opts.ignore == ["GP408"]
    assert cfg.options_for(tmp_path / "scripts" / "a.py").ignore == ["GP408", "GP401", "GP402"]
    assert cfg.options_for(tmp_path / "tests" / "unit" / "t.py").ignore == ["GP408", "GP1"]
    assert cfg.is_excluded(tmp_path / "build" / "x.py")
    assert cfg.is_excluded(tmp_path / "legacy" / "a" / "b.py")
    assert cfg.is_excluded(tmp_path / "legacy" / "b.py")
    assert not cfg.is_excluded(tmp_path / "pkg" / "build.py")
    assert not cfg.is_excluded(tmp_path / "pkg" / "train.py")


def test_severity_override_applies_in_analysis(tmp_path):
    from gradpath.analysis import analyze
    write(tmp_path / "pyproject.toml", "[tool.gradpath.severity]\nGP1 = \"warning\"\nGP101 = \"info\"\n")
    f = write(tmp_path / "t.py", "from torch import optim\nopt = optim.Adam([], lr=0.1)\n")
    cfg, _ = load_project_config(f)
    (finding,) = analyze(f.read_text(), str(f), cfg.options_for(f)).findings
    assert (finding.code, finding.severity) == ("GP101", "info")  # the longest selector wins
    cfg2, _ = load_config_file(write(tmp_path / "g.toml", "ignore = ['GP101']\n"))
    assert analyze(f.read_text(), str(f), cfg2.options_for(f)).findings == []


def test_walks_up_and_prefers_gradpath_toml(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.gradpath]\nignore = [\"GP101\"]\n")
    write(tmp_path / "sub" / "pyproject.toml", "[project]\nname = \"x\"\n")  # no [tool.gradpath]: passed over
    f = write(tmp_path / "sub" / "deep" / "t.py", "")
    assert find_config_file(f) == tmp_path / "pyproject.toml"
    write(tmp_path / "sub" / "gradpath.toml", "ignore = [\"GP102\"]\n")
    assert find_config_file(f) == tmp_path / "sub" / "gradpath.toml"
    cfg, warnings = load_project_config(f)
    assert cfg.ignore == ["GP102"] and warnings == []
    # in one folder gradpath.toml wins over pyproject.toml
    write(tmp_path / "sub" / "pyproject.toml", "[tool.gradpath]\nignore = [\"GP103\"]\n")
    assert find_config_file(f) == tmp_path / "sub" / "gradpath.toml"


def test_no_config_is_default(tmp_path):
    f = write(tmp_path / "t.py", "")
    cfg, warnings = load_project_config(f)
    assert cfg.path is None and warnings == [] and cfg.options_for(f) == Options()


def test_bad_keys_and_values_warn_and_the_rest_applies(tmp_path):
    path = write(tmp_path / "pyproject.toml", """\
        [tool.gradpath]
        selct = ["GP1"]
        ignore = ["GP999", "GP401", 7]
        exclude = 5
        per_file_ignores = {}

        [tool.gradpath.severity]
        GP102 = "fatal"
        GP103 = "error"
        XY1 = "info"

        [tool.gradpath.per-file-ignores]
        "tests/*" = ["GP1", "nope"]

        [tool.gradpath.live]
        timeout-seconds = -1
        memory-mb = 512
        cpus = 2
        """)
    cfg, warnings = load_project_config(tmp_path / "t.py")
    p = str(path)
    assert all(w.startswith(p + ": ") for w in warnings), warnings
    text = "\n".join(warnings)
    assert "unknown key '[tool.gradpath] selct' (did you mean 'select'?); allowed keys: select, ignore, " \
           "severity, exclude, per-file-ignores, live" in text
    assert "unknown key '[tool.gradpath] per_file_ignores' (did you mean 'per-file-ignores'?)" in text
    assert "[tool.gradpath] ignore: unknown rule selector 'GP999'" in text
    assert "[tool.gradpath] ignore: 7 is not a string" in text
    assert "[tool.gradpath] exclude: expected a list of glob patterns" in text
    assert "[tool.gradpath] severity.GP102: 'fatal' is not a severity; allowed: error, warning, info" in text
    assert "[tool.gradpath] severity.XY1: unknown rule selector 'XY1'" in text
    assert "unknown rule selector 'nope'" in text
    assert "[tool.gradpath] live.timeout-seconds: expected a number of seconds, more than 0 and at most 3600; " \
           "got -1" in text
    assert "unknown key '[tool.gradpath] live.cpus'; allowed keys: timeout-seconds, memory-mb" in text
    assert len(warnings) == 10, warnings
    # everything valid still applies
    assert cfg.ignore == ["GP401"] and cfg.severity == {"GP103": "error"}
    assert cfg.per_file_ignores == {"tests/*": ["GP1"]}
    assert cfg.live.memory_mb == 512 and cfg.live.timeout_seconds is None
    assert cfg.select is None


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path / "gradpath.toml", "select = [\"GP1\"\n")
    cfg, warnings = load_project_config(tmp_path / "x.py")
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: not valid TOML (")
    assert cfg.path == path and cfg.select is None


def test_gradpath_toml_top_level_keys(tmp_path):
    path = write(tmp_path / "gradpath.toml", 'select = "GP2"\n[severity]\nGP201 = "warning"\n')
    cfg, warnings = load_config_file(path)
    assert warnings == [] and cfg.select == ["GP2"] and cfg.severity == {"GP201": "warning"}
    # in a gradpath.toml the key is named without the table prefix
    _, w2 = load_config_file(write(tmp_path / "g2" / "gradpath.toml", "bogus = 1\n"))
    assert w2[0].endswith("unknown key 'bogus'; allowed keys: select, ignore, severity, exclude, "
                          "per-file-ignores, live; ignored")


def test_cache_sees_edits(tmp_path):
    import os
    path = write(tmp_path / "gradpath.toml", 'ignore = ["GP101"]\n')
    assert load_config_file(path)[0].ignore == ["GP101"]
    path.write_text('ignore = ["GP102"]\n')
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_config_file(path)[0].ignore == ["GP102"]
    # callers may modify what they get without changing the cache
    cfg = load_config_file(path)[0]
    cfg.ignore.append("GP1")
    assert load_config_file(path)[0].ignore == ["GP102"]


def test_glob_match():
    assert glob_match("build/x.py", "build")
    assert glob_match("a/build/x.py", "build")
    assert glob_match("nb/explore.ipynb", "*.ipynb")
    assert glob_match("legacy/x.py", "legacy/")
    assert glob_match("legacy/a/b/x.py", "legacy/**/*.py")
    assert glob_match("legacy/x.py", "legacy/**/*.py")
    assert glob_match("scripts/a.py", "./scripts/*.py")
    assert not glob_match("scripts/sub/a.py", "scripts/*.py")
    assert not glob_match("src/legacy.py", "legacy/")
    assert glob_match("t_1.py", "t_[0-9].py") and not glob_match("t_a.py", "t_[!a-z].py")


def test_editor_settings_override_project():
    project = Options(select=["GP1"], ignore=["GP102"], severity={"GP1": "info", "GP101": "warning"})
    editor = Options(severity={"GP101": "error"})  # the editor set only a severity
    merged = merge_options(project, editor)
    assert merged.select == ["GP1"] and merged.ignore == ["GP102"]
    assert merged.severity == {"GP1": "info", "GP101": "error"}
    merged = merge_options(project, Options(select=["GP2"], ignore=["GP201"]))
    assert merged.select == ["GP2"] and merged.ignore == ["GP102", "GP201"]  # per-file ignores survive
    assert merge_options(project, None) == project
    assert project.severity == {"GP1": "info", "GP101": "warning"}  # inputs unchanged


def test_options_for_file_with_editor(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.gradpath]\nignore = [\"GP401\"]\nselect = [\"GP\"]\n")
    f = write(tmp_path / "t.py", "")
    opts, warnings = options_for_file(f, Options(select=["GP1"]))
    assert warnings == [] and opts.select == ["GP1"] and opts.ignore == ["GP401"]


def test_language_server_settings_layer_on_project_options(tmp_path):
    """The language server's `options_from_settings(settings, base=...)` takes the project's
    options as its base: the documented way for the two to combine."""
    from gradpath.config import options_from_settings
    write(tmp_path / "pyproject.toml", "[tool.gradpath]\nignore = [\"GP401\"]\n[tool.gradpath.severity]\nGP1 = \"info\"\n")
    f = write(tmp_path / "t.py", "")
    base, _ = options_for_file(f)
    opts = options_from_settings({"select": ["GP1", "GP4"], "severity": {"GP102": "error"}}, base=base)
    assert opts.select == ["GP1", "GP4"] and "GP401" in opts.ignore
    assert opts.severity == {"GP1": "info", "GP102": "error"}


def test_relative_outside_root(tmp_path):
    cfg = ProjectConfig(path=tmp_path / "proj" / "pyproject.toml", exclude=["*.py"])
    assert not cfg.is_excluded(tmp_path / "other" / "x.py")
    assert cfg.is_excluded(tmp_path / "proj" / "x.py")
