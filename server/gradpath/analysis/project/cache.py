"""Summaries cached by content hash: in memory, and on disk under the user cache folder
($XDG_CACHE_HOME or ~/.cache)/gradpath/<version>/projects/<hash of the project root>.json.

The disk file is JSON (never unpickled), written atomically (a temporary file, then rename). A file
that is corrupt, truncated, written by another gradpath version or schema, or not ours at all is
ignored and rewritten on the next save; nothing here raises to the caller.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading

from gradpath import __version__
from gradpath.analysis.project.summaries import SCHEMA

log = logging.getLogger("gradpath.project")

MAGIC = "gradpath-summaries"


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_home() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gradpath", __version__)


class SummaryCache:
    def __init__(self, root: str | None, use_disk: bool = True, folder: str | None = None):
        self.root = os.path.abspath(root) if root else None
        self.use_disk = use_disk and root is not None
        self.folder = folder or os.path.join(cache_home(), "projects")
        self._mem: dict[str, dict | None] = {}
        # path -> [mtime_ns, size, content hash] of the text last summarised: a file whose stat is
        # unchanged is not read again on a warm start
        self.files: dict[str, list] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._loaded = False
        self.stats = {"hits": 0, "misses": 0, "disk_entries": 0, "disk_ignored": 0}

    @property
    def path(self) -> str | None:
        if not self.use_disk:
            return None
        h = hashlib.sha1(self.root.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return os.path.join(self.folder, h + ".json")

    def load(self) -> None:
        if self._loaded or not self.use_disk:
            self._loaded = True
            return
        self._loaded = True
        p = self.path
        try:
            with open(p, "r", encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            log.info("ignoring an unreadable summary cache %s", p)
            self.stats["disk_ignored"] += 1
            self._dirty = True
            return
        if not (isinstance(data, dict) and data.get("magic") == MAGIC and data.get("version") == __version__
                and data.get("schema") == SCHEMA and data.get("root") == self.root
                and isinstance(data.get("entries"), dict)):
            log.info("ignoring a summary cache of another version or project: %s", p)
            self.stats["disk_ignored"] += 1
            self._dirty = True
            return
        with self._lock:
            for k, v in data["entries"].items():
                if isinstance(k, str) and (v is None or isinstance(v, dict) and v.get("schema") == SCHEMA):
                    self._mem.setdefault(k, v)
            self.stats["disk_entries"] = len(data["entries"])
            files = data.get("files")
            if isinstance(files, dict):
                for k, v in files.items():
                    if isinstance(v, list) and len(v) == 3 and isinstance(v[2], str) and v[2] in self._mem:
                        self.files[k] = v

    def get(self, key: str):
        """(True, summary) when known (the summary may be None: the text did not parse)."""
        with self._lock:
            if key in self._mem:
                self.stats["hits"] += 1
                return True, self._mem[key]
        self.stats["misses"] += 1
        return False, None

    def put(self, key: str, summary: dict | None) -> None:
        with self._lock:
            if self._mem.get(key, 0) != summary:
                self._mem[key] = summary
                self._dirty = True

    def known_file(self, path: str, st) -> str | None:
        """The content hash recorded for `path` when its stat (mtime, size) is unchanged."""
        v = self.files.get(path)
        if v is not None and v[0] == st.st_mtime_ns and v[1] == st.st_size:
            return v[2]
        return None

    def note_file(self, path: str, st, h: str) -> None:
        v = [st.st_mtime_ns, st.st_size, h]
        if self.files.get(path) != v:
            self.files[path] = v
            self._dirty = True

    def save(self, keep: set[str] | None = None) -> None:
        """Write the entries (only those in `keep` when given: the project's current texts)."""
        if not self.use_disk or not self._dirty:
            return
        with self._lock:
            entries = {k: v for k, v in self._mem.items() if keep is None or k in keep}
            files = {k: v for k, v in self.files.items() if v[2] in entries}
            self._dirty = False
        data = {"magic": MAGIC, "version": __version__, "schema": SCHEMA, "root": self.root, "entries": entries,
                "files": files}
        p = self.path
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".summaries-", suffix=".tmp", dir=os.path.dirname(p))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                os.replace(tmp, p)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            log.info("could not write the summary cache %s: %s", p, exc)
