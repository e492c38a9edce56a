import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np

from onefield.app.cli import main
from onefield.app.info import machine_info


def test_info_reports_versions_device_and_kernels(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch 2." in out and "cpu:" in out
    assert "kernels on cpu: native C++" in out
    info = machine_info()
    assert info["kernels_cpu"] == "cpp" and info["extension_error"] is None
    json.dumps(info)  # plain data, embeddable in benchmark results


def test_info_shows_the_override(monkeypatch, capsys):
    monkeypatch.setenv("ONEFIELD_KERNELS", "torch")
    assert main(["info"]) == 0
    assert "kernels on cpu: pure-torch reference" in capsys.readouterr().out


def test_demo_writes_the_images(tmp_path, capsys):
    assert main(["demo", "--size", "48", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rgb = iio.imread(tmp_path / "orbs_rgb.png")
    depth = iio.imread(tmp_path / "orbs_depth.png")
    assert rgb.shape == (48, 48, 3) and depth.shape == (48, 48)
    assert str(tmp_path / "orbs_rgb.png") in out
    assert (rgb == 255).all(-1).mean() > 0.3  # white background around the balls
    colourful = (rgb.max(-1).astype(int) - rgb.min(-1)) > 80
    assert colourful.mean() > 0.05  # and the balls themselves
    assert np.unique(depth[colourful]).size > 10  # depth varies over their surfaces


def test_demo_bad_arguments_are_clear(tmp_path, capsys):
    assert main(["demo", "--scene", "teapot", "--out", str(tmp_path)]) == 2
    assert "unknown scene 'teapot'" in capsys.readouterr().err


def test_console_script_runs():
    exe = subprocess.run([sys.executable, "-m", "onefield.app.cli", "info"], capture_output=True, text=True, check=True)
    assert "onefield" in exe.stdout
