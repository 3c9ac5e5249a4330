"""Summaries cached by content hash: in memory, and on disk under the user cache folder
($XDG_CACHE_HOME or ~/.cache)/gradpath/<version>/projects/<hash of the project root>.json.

The disk file is JSON (never unpickled), written atomically (a temporary file, then rename). A file
that is corrupt, truncated, written by another gradpath version or schema, or not ours at all is
ignored and rewritten on the next save; nothing here raises to the caller.

Layout: the header (magic, version, schema, root, the files' stats) on the first line, then one
entry per line, so that a single-file check (analysis/project/lazy.py) decodes only the summaries of
the modules it needs (`load(lazy=True)`): the rest stay undecoded text, written back as they were.
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
        # lazy loading: the file's text and key -> (start, end) of each undecoded entry's JSON
        self._raw: str = ""
        self._spans: dict[str, tuple[int, int]] = {}

    @property
    def path(self) -> str | None:
        if not self.use_disk:
            return None
        h = hashlib.sha1(self.root.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return os.path.join(self.folder, h + ".json")

    def load(self, lazy: bool = False) -> None:
        """Read the disk file. `lazy`: decode the header now and each entry when it is first asked
        for (falls back to a whole load for a file in another layout)."""
        if self._loaded or not self.use_disk:
            self._loaded = True
            return
        self._loaded = True
        p = self.path
        if lazy:
            try:
                with open(p, "r", encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                return
            except (OSError, UnicodeDecodeError):
                text = None
            if text is not None and self._load_lazy(text):
                return
            self._dirty = True  # another layout: written again in this one
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

    _HEAD_END = '"entries":{'

    def _load_lazy(self, text: str) -> bool:
        """The header decoded, the entries' places noted; False when the text is not in the
        line-per-entry layout (the caller then loads it whole, which also judges it)."""
        nl = text.find("\n")
        if nl < 0 or not text.startswith("{") or not text[:nl].endswith(self._HEAD_END):
            return False
        try:
            head = json.loads(text[:nl - len(self._HEAD_END)].rstrip().rstrip(",") + "}")
        except (ValueError, RecursionError):
            return False
        if not (isinstance(head, dict) and head.get("magic") == MAGIC and head.get("version") == __version__
                and head.get("schema") == SCHEMA and head.get("root") == self.root):
            return False
        spans: dict[str, tuple[int, int]] = {}
        pos, n = nl + 1, len(text)
        while pos < n:
            end = text.find("\n", pos)
            if end < 0:
                end = n
            if text.startswith('"', pos):
                k_end = text.find('":', pos + 1)
                if k_end < 0:
                    return False
                v_end = end - 1 if text[end - 1] == "," else end
                spans[text[pos + 1:k_end]] = (k_end + 2, v_end)
            pos = end + 1
        with self._lock:
            self._raw, self._spans = text, spans
            self.stats["disk_entries"] = len(spans)
            files = head.get("files")
            if isinstance(files, dict):
                for k, v in files.items():
                    if isinstance(v, list) and len(v) == 3 and isinstance(v[2], str) and v[2] in spans:
                        self.files[k] = v
        return True

    def _decode(self, key: str) -> bool:
        """Decode one lazily loaded entry into memory (under the lock); True when it is usable."""
        sp = self._spans.pop(key, None)
        if sp is None:
            return False
        try:
            v = json.loads(self._raw[sp[0]:sp[1]])
        except (ValueError, RecursionError):
            return False
        if v is None or isinstance(v, dict) and v.get("schema") == SCHEMA:
            self._mem.setdefault(key, v)
            return True
        return False

    def get(self, key: str):
        """(True, summary) when known (the summary may be None: the text did not parse)."""
        with self._lock:
            if key in self._mem or (key in self._spans and self._decode(key)):
                self.stats["hits"] += 1
                return True, self._mem[key]
        self.stats["misses"] += 1
        return False, None

    def knows(self, key: str) -> bool:
        """Whether `get(key)` would answer from the cache (not counted in the stats)."""
        with self._lock:
            return key in self._mem or key in self._spans

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
            # entries of a lazy load never decoded: their text as it was read
            raw = {k: self._raw[a:b] for k, (a, b) in self._spans.items()
                   if (keep is None or k in keep) and k not in entries}
            files = {k: v for k, v in self.files.items() if v[2] in entries or v[2] in raw}
            self._dirty = False
        head = {"magic": MAGIC, "version": __version__, "schema": SCHEMA, "root": self.root, "files": files}
        p = self.path
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".summaries-", suffix=".tmp", dir=os.path.dirname(p))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    # one JSON document; the header on the first line, then one entry per line
                    # (JSON strings never hold a raw newline)
                    fh.write(json.dumps(head, separators=(",", ":"))[:-1] + "," + self._HEAD_END + "\n")
                    items = [(k, json.dumps(v, separators=(",", ":"))) for k, v in entries.items()]
                    items += list(raw.items())
                    for i, (k, v) in enumerate(items):
                        fh.write(json.dumps(k) + ":" + v + ("," if i < len(items) - 1 else "") + "\n")
                    fh.write("}}\n")
                os.replace(tmp, p)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            log.info("could not write the summary cache %s: %s", p, exc)
