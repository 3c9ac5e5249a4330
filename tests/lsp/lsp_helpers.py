"""pytest-lsp fixtures: the real `python -m gradpath serve` over stdio."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SEEDS = FIXTURES / "seeds"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "server") + os.pathsep + env.get("PYTHONPATH", "")
    return env


CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "gradpath", "serve"], server_env=_env())

CAPS = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(configuration=False),
    notebook_document=types.NotebookDocumentClientCapabilities(
        synchronization=types.NotebookDocumentSyncClientCapabilities()),
    text_document=types.TextDocumentClientCapabilities(
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(
            related_information=True, version_support=True, code_description_support=True,
            data_support=True),
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=["quickfix", "source.fixAll"])),
            is_preferred_support=True, data_support=True),
        hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
    ),
)


async def _init(client: LanguageClient, options: dict) -> None:
    await client.initialize_session(types.InitializeParams(
        capabilities=CAPS, root_uri=from_fs_path(str(FIXTURES)),
        workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(FIXTURES)), name="fixtures")],
        initialization_options=options))


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    await _init(lsp_client, {"debounceMs": 100})
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=CONFIG)
async def untrusted(lsp_client: LanguageClient):
    await _init(lsp_client, {"debounceMs": 100, "trusted": False})
    yield
    await lsp_client.shutdown_session()


# -- helpers ----------------------------------------------------------------------------------------
class Recorder:
    """Every publishDiagnostics the client receives, in order (pytest-lsp keeps only the last)."""

    def __init__(self, client: LanguageClient):
        self.items: list[types.PublishDiagnosticsParams] = []
        self.event = asyncio.Event()
        fm = client.protocol.fm
        orig = fm.features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

        def handler(params):
            self.items.append(params)
            self.event.set()
            return orig(params)

        fm.features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = handler

    async def wait_for(self, pred, timeout: float = 5.0) -> types.PublishDiagnosticsParams:
        """The first publish (already received or future) that satisfies pred."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for p in self.items[seen:]:
                if pred(p):
                    return p
            seen = len(self.items)
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no matching publishDiagnostics in {timeout}s; got "
                                   f"{[(p.uri.rsplit('/', 1)[-1], p.version, len(p.diagnostics)) for p in self.items]}")
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except asyncio.TimeoutError:
                pass


def open_doc(client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


def change_doc(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


def offset_of(lines: list[str], pos: types.Position) -> int:
    """Offset in the joined text of a UTF-16 LSP position."""
    off = sum(len(l) + 1 for l in lines[:pos.line])
    line = lines[pos.line] if pos.line < len(lines) else ""
    units = 0
    for i, ch in enumerate(line):
        if units >= pos.character:
            return off + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return off + len(line)


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    """Apply LSP TextEdits (UTF-16 positions) to a text the way an editor does."""
    lines = text.split("\n")
    spans = [(offset_of(lines, e.range.start), offset_of(lines, e.range.end), e.new_text) for e in edits]
    for s, e, new in sorted(spans, key=lambda t: (t[0], t[1]), reverse=True):
        text = text[:s] + new + text[e:]
        lines = text.split("\n")
    return text


def uri_of(path: Path | str) -> str:
    return from_fs_path(str(path))
