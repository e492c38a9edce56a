"""The registry drives every front door: a backend whose module fails to import breaks only itself,
and `onefield fit --field NAME` takes its options from the backend's config without CLI code."""

import sys

import pytest

from onefield import fields
from onefield.app.cli import main
from onefield.fields import registry

TINY = ["--hashgrid.n-levels", "4", "--hashgrid.log2-table-size", "10", "--hashgrid.max-resolution", "32",
        "--trainer.target-samples", "2048", "--trainer.render-steps", "64", "--trainer.grid-resolution", "16"]


@pytest.fixture
def broken_backend(tmp_path, monkeypatch):
    (tmp_path / "onefield_test_broken.py").write_text("raise ImportError('needs the missing package frobnicate')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register("broken", "onefield_test_broken", "BrokenField", "a backend whose module cannot be imported")
    yield "broken"
    registry.unregister("broken")
    sys.modules.pop("onefield_test_broken", None)


def test_a_broken_backend_breaks_only_itself(broken_backend, shapes_scene, tmp_path, capsys):
    assert "broken" in fields.names()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "field hashgrid" in out and "broken" in out and "frobnicate" in out

    assert main(["fit", str(shapes_scene.root), "--field", "broken", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "field backend 'broken' cannot be loaded" in err and "needs the missing package frobnicate" in err

    runs = tmp_path / "runs"
    assert main(["fit", str(shapes_scene.root), "--steps", "2", "--out", str(runs), *TINY]) == 0
    assert next((runs / shapes_scene.root.name / "hashgrid").iterdir()).is_dir()


def test_fit_options_come_from_the_chosen_backend(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--field", "tensorf-cp", "--help"])
    help_text = capsys.readouterr().out
    assert "--tensorf-cp.density-rank" in help_text and "--hashgrid." not in help_text
    for name in fields.names():
        assert name in help_text  # every registered backend is offered
    assert main(["fit", "/data", "--tensorf-cp.density-rank", "4"]) == 2  # options of a backend not chosen
    assert "--tensorf-cp.density-rank is an option of the tensorf-cp backend; add --field tensorf-cp" in \
        capsys.readouterr().err


def test_start_up_imports_no_backend():
    # the proposal networks are no backend: the trainer's sampler, built on cuda_ext's hash encoding
    code = ("import sys; from onefield.app import cli; "
            "print(sorted(m for m in sys.modules if m.startswith('onefield.fields.') and m not in "
            "('onefield.fields.base', 'onefield.fields.registry', 'onefield.fields.proposal')))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_options_name_the_backend():
    with pytest.raises(ValueError, match="unknown option.*field 'hashgrid': colour"):
        fields.make_config("hashgrid", {"colour": 1})
