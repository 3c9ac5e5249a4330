"""Build hook: ships the rule pages (docs/rules/*.md) inside the package as gradpath/data/docs/, so
`gradpath explain` prints the same page from an installed wheel as from a checkout. Everything else
about the package is in pyproject.toml."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithDocs(build_py):
    def run(self):
        super().run()
        docs = ROOT / "docs" / "rules"
        if not docs.is_dir():
            return
        target = Path(self.build_lib) / "gradpath" / "data" / "docs"
        target.mkdir(parents=True, exist_ok=True)
        for page in sorted(docs.glob("*.md")):
            self.copy_file(str(page), str(target / page.name))


setup(cmdclass={"build_py": BuildPyWithDocs})
