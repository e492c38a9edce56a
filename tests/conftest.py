"""Shared test set-up: devices to run on, and the native extension as a hard requirement."""

import os
from pathlib import Path

import pytest
import torch

from onefield.cuda_ext import LOAD_ERROR, native

# Parametrize over every device the build supports. No skip: on a CPU-only machine the CUDA cases
# are simply not generated, and on a GPU machine they all run.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and native is not None and native.has_cuda() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _kernels_env(monkeypatch):
    """Tests choose implementations explicitly; an inherited ONEFIELD_KERNELS must not leak in."""
    monkeypatch.delenv("ONEFIELD_KERNELS", raising=False)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, so results never depend on test order."""
    torch.manual_seed(0)


@pytest.fixture
def require_native() -> None:
    """Kernel-vs-reference tests need the compiled extension; a missing build is a failure."""
    if native is None:
        pytest.fail(f"native extension not built ({LOAD_ERROR}); run `make setup` "
                    "(pip install --no-build-isolation -e .)")


def pytest_report_header(config) -> str:
    return (f"onefield devices: {DEVICES}; native extension: "
            f"{'loaded' if native is not None else 'MISSING: ' + str(LOAD_ERROR)}; CI={os.environ.get('CI', '')}")


def pytest_sessionfinish(session, exitstatus) -> None:
    """Under CI every test must run: a skip is a failure there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") == "true" and skipped:
        print(f"\nCI=true: {skipped} test(s) were skipped; every test must run in CI")
        session.exitstatus = 1


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared datasets ($ONEFIELD_DATA, default ../shared/data). Missing data skips a test
    locally and fails it under CI (see pytest_sessionfinish)."""
    root = Path(os.environ.get("ONEFIELD_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}; set ONEFIELD_DATA")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Downscaled copies go to a per-session cache, never the user's."""
    monkeypatch.setenv("ONEFIELD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def shapes_scene(tmp_path_factory):
    """A small copy of the built-in demo scene: 24 training and 6 held-out views at 40x40."""
    from onefield.scenes import make_shapes_scene

    return make_shapes_scene(tmp_path_factory.mktemp("shapes"), n_train=24, n_test=6, size=40)


SHAPES_FIELD = {"n_levels": 12, "log2_table_size": 15, "max_resolution": 256}  # a small hash grid: seconds per fit
SHAPES_TRAINER = dict(target_samples=1 << 13, render_steps=256, eval_every=0, checkpoint_every=0)


@pytest.fixture(scope="session")
def fitted_shapes(shapes_scene, tmp_path_factory):
    """One 600-step hash-grid fit of `shapes_scene` (~20 s), shared by the tests that need a trained run
    (the trainer's, the exporter's, the viewer's): a FitJob whose trainer is still in memory. Tests
    may add files to its run folder but change nothing in it; one that must, copies it first."""
    from onefield.app.fit import FitJob
    from onefield.app.runs import DataSpec
    from onefield.app.trainer import TrainerConfig

    torch.manual_seed(0)
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "hashgrid", SHAPES_FIELD,
                        TrainerConfig(steps=600, **SHAPES_TRAINER), tmp_path_factory.mktemp("fitted"))
    job.run()
    return job


@pytest.fixture(scope="session")
def free_port():
    """A function returning a free local port (for the GUI tests' servers)."""
    import socket

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick
