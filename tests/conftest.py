"""Shared test set-up: devices to run on, and the native extension as a hard requirement."""

import os

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
