"""The GUI's folders. Every browser session works in its own folder; shared, read-mostly folders
hold datasets and runs put there by hand or by the CLI:

    WORKSPACE/data/<dataset>/            datasets every session can pick (`onefield process ... WORKSPACE/data/x`)
    WORKSPACE/runs/<scene>/<field>/<t>/  runs every session lists (`onefield fit ... --out WORKSPACE/runs`)
    WORKSPACE/sessions/<id>/uploads/     one session's checked uploads
    WORKSPACE/sessions/<id>/data/        its processed datasets and demo scenes
    WORKSPACE/sessions/<id>/runs/        its runs

A session id is a random 128-bit token kept in the browser (it is the session's key). Every path a
request names is normalised ('..' removed) and must lie in that session's folder or a shared one:
no request reads or writes outside them. Links are not followed by the check on purpose: nothing a
session can do creates one (uploads refuse links), so a link in the workspace was put there by its
owner, e.g. `WORKSPACE/data/fern -> /datasets/fern`.
"""

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from onefield.errors import UserError

_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def safe_name(text: str, fallback: str = "upload") -> str:
    """A folder name made from user text: letters, digits, '.', '_' and '-' only."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).stem).strip(".-_")[:64]
    return name if _NAME.fullmatch(name) else fallback


def _written(run: Path) -> float:
    try:
        return (run / "config.json").stat().st_mtime
    except OSError:  # removed since it was listed
        return 0.0


@dataclass(frozen=True)
class Session:
    id: str
    root: Path  # WORKSPACE/sessions/<id>
    workspace: "Workspace"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def readable_roots(self) -> tuple[Path, ...]:
        return self.root, self.workspace.shared_data, self.workspace.shared_runs

    def resolve(self, path: str | Path, what: str = "path") -> Path:
        """`path` resolved, if it lies in this session's folder or a shared one; else a UserError."""
        if not path:
            raise UserError(f"no {what} chosen")
        resolved = Path(os.path.abspath(path))
        if not any(resolved.is_relative_to(root) for root in self.readable_roots()):
            raise UserError(f"{what} {path} is outside this session's workspace")
        if not resolved.exists():
            raise UserError(f"{what} {path} does not exist (any more); refresh the list")
        return resolved

    def datasets(self) -> list[Path]:
        """Dataset folders: this session's, then the shared ones."""
        found = []
        for root in (self.data, self.workspace.shared_data):
            if root.is_dir():
                found += sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        return found

    def run_roots(self) -> tuple[Path, Path]:
        return self.runs, self.workspace.shared_runs

    def batch_dirs(self) -> list[Path]:
        """Batch output folders (with a batch.json): a runs folder itself (`onefield batch --out
        WORKSPACE/runs`) or a folder in it (`--out WORKSPACE/runs/<name>`), this session's and the shared ones."""
        found = []
        for root in self.run_roots():
            found += sorted(p.parent for p in (*root.glob("batch.json"), *root.glob("*/batch.json")))
        return found

    def run_dirs(self) -> list[Path]:
        """Run folders (those with a config.json), newest first: this session's and the shared ones, and the
        cells of the batches in them."""
        found = []
        for root in (*self.run_roots(), *self.batch_dirs()):
            if root.is_dir():
                found += [p.parent for p in root.glob("*/*/*/config.json")]
        # newest first by when config.json was written (a fit's start or resume), not by name: batch cells
        # have fixed names
        return sorted(dict.fromkeys(found), key=_written, reverse=True)


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(os.path.abspath(root))
        self.sessions = self.root / "sessions"
        self.shared_data, self.shared_runs = self.root / "data", self.root / "runs"
        for folder in (self.sessions, self.shared_data, self.shared_runs):
            folder.mkdir(parents=True, exist_ok=True)
        # uploads a killed server was still checking: at start-up nothing is being staged
        for stale in self.sessions.glob("*/uploads/.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)

    @property
    def secret(self) -> str:
        """The key of gradio's BrowserState for the session id. The browser receives it with the page,
        so it protects nothing; it is kept in the workspace only so that a restarted GUI still reads
        what the browser stored (gradio draws a new one at each start otherwise)."""
        path = self.root / ".secret"
        if not path.is_file():
            path.write_text(secrets.token_hex(16))
        return path.read_text().strip()

    def session(self, session_id: str | None, create: bool = False) -> Session:
        """The existing session of `session_id`; with `create`, a new one instead of a missing or
        malformed id (an id is never a path: only 32 hex digits name a folder)."""
        valid = isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None
        if not (valid and (self.sessions / session_id).is_dir()):
            if not create:
                raise UserError("this page's session is unknown to the server (a new workspace?): reload the page")
            session_id = secrets.token_hex(16)
        session = Session(session_id, self.sessions / session_id, self)
        for folder in (session.uploads, session.data, session.runs):
            folder.mkdir(parents=True, exist_ok=True)
        return session
