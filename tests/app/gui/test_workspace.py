"""The GUI's folders: session ids that are never paths, the one path check, and start-up clean-up."""

import pytest

from onefield.app.gui.workspace import Workspace, safe_name
from onefield.errors import UserError


def test_session_ids_are_keys_never_paths(tmp_path):
    ws = Workspace(tmp_path)
    new = ws.session(None, create=True)
    assert len(new.id) == 32 and new.uploads.is_dir() and new.runs.is_dir()
    assert ws.session(new.id).root == new.root  # the same key, the same folder
    for bad in ("../../etc", "0" * 32, new.id.upper(), None, 7):
        with pytest.raises(UserError, match="reload the page"):
            ws.session(bad)
        assert ws.session(bad, create=True).id not in (bad, new.id)  # start-up makes a fresh one instead
    assert not (tmp_path / "etc").exists()


def test_paths_must_stay_in_the_session_or_the_shared_folders(tmp_path):
    ws = Workspace(tmp_path)
    me, other = ws.session(None, create=True), ws.session(None, create=True)
    (me.data / "mine").mkdir()
    (ws.shared_data / "common").mkdir()
    (other.data / "theirs").mkdir()
    assert me.resolve(me.data / "mine") == me.data / "mine"
    assert me.resolve(ws.shared_data / "common") == ws.shared_data / "common"
    for outside in (other.data / "theirs", me.data / ".." / ".." / other.id / "data" / "theirs", "/etc", tmp_path):
        with pytest.raises(UserError, match="outside this session's workspace"):
            me.resolve(outside)
    with pytest.raises(UserError, match="does not exist"):
        me.resolve(me.data / "gone")
    assert [p.name for p in me.datasets()] == ["mine", "common"]


def test_stale_staging_folders_are_removed_at_start(tmp_path):
    session = Workspace(tmp_path).session(None, create=True)
    stale = session.uploads / ".staging-1234"
    (stale / "half").mkdir(parents=True)
    kept = session.uploads / "photos"
    kept.mkdir()
    Workspace(tmp_path)
    assert not stale.exists() and kept.is_dir()


def test_safe_names():
    assert safe_name("My Photos (2).zip") == "My-Photos-2"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("...") == "upload"
