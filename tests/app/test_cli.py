import json
import subprocess
import sys

import imageio.v2 as imageio_v2
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


TINY = ["--hashgrid.n-levels", "8", "--hashgrid.log2-table-size", "14", "--hashgrid.max-resolution", "128",
        "--trainer.target-samples", "4096", "--trainer.render-steps", "128", "--trainer.grid-resolution", "32"]


def test_fit_eval_render(shapes_scene, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["fit", str(shapes_scene.root), "--steps", "25", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    runs = list((out / shapes_scene.root.name / "hashgrid").iterdir())
    assert len(runs) == 1 and str(runs[0].resolve()) in printed and "held-out PSNR" in printed
    run = runs[0]
    assert json.loads((run / "config.json").read_text())["trainer"]["steps"] == 25
    assert (run / "checkpoints" / "latest" / "model.safetensors").is_file()

    assert main(["eval", str(run)]) == 0
    assert "6 test views: PSNR" in capsys.readouterr().out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert len(metrics["views"]) == 6 and metrics["background"] == "white"
    assert metrics["mean"]["psnr"] == np.mean([v["psnr"] for v in metrics["views"]])
    side_by_side = iio.imread(run / "eval" / "r_0.png")
    assert side_by_side.shape == (40, 120, 3)

    assert main(["render", str(run), "--frames", "6", "--fps", "3"]) == 0
    assert len(list((run / "renders" / "views").glob("*.png"))) == 6
    with imageio_v2.get_reader(run / "renders" / "turntable.mp4") as reader:
        frames = [f for f in reader]
    assert len(frames) == 6 and frames[0].shape == (40, 40, 3)
    assert frames[0].std() > 5  # not a blank frame

    assert main(["compare", str(run), str(run), "--size", "32", "--out", str(tmp_path / "cmp.png")]) == 0
    table = capsys.readouterr().out
    assert table.count(f"{metrics['mean']['psnr']:.2f}") == 2 and "hashgrid" in table
    assert iio.imread(tmp_path / "cmp.png").shape[1] >= 2 * 32

    assert main(["resume", str(run), "--steps", "30"]) == 0
    trainer_json = json.loads((run / "checkpoints" / "latest" / "trainer.json").read_text())
    assert trainer_json["state"]["step"] == 30


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main(["fit", str(tmp_path)]) == 2
    assert "no known dataset here" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["fit", str(tmp_path), "--field", "voxels"]) == 2
    assert "unknown field backend 'voxels'" in capsys.readouterr().err


def test_fit_scene_overrides(shapes_scene, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["fit", str(shapes_scene.root), "--steps", "2", "--out", str(out), *TINY]
    assert main([*args, "--aabb", "-1.2", "-1.1", "-1", "1", "1.1", "1.2", "--near", "1.5", "--far", "5",
                 "--cascades", "2"]) == 0
    run = next((out / shapes_scene.root.name / "hashgrid").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["aabb"] == [-1.2, -1.1, -1.0, 1.0, 1.1, 1.2] and config["grid_levels"] == 2
    assert config["data"]["near"] == 1.5 and config["data"]["far"] == 5.0
    capsys.readouterr()
    assert main([*args, "--near", "3", "--far", "2"]) == 2
    assert "far (2.0) must exceed near (3.0)" in capsys.readouterr().err
    assert main([*args, "--aabb", "1", "0", "0", "0", "1", "1"]) == 2
    assert "aabb must be min xyz then max xyz" in capsys.readouterr().err


def test_demo_command(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--minutes", "0.05", "--size", "24", "--views", "8"]) == 0
    printed = capsys.readouterr().out
    assert "held-out PSNR" in printed and "turntable video" in printed
    assert (tmp_path / "data" / "shapes" / "mesh.ply").is_file()
    run = next((tmp_path / "shapes" / "hashgrid").iterdir())
    assert (run / "renders" / "turntable.mp4").is_file() and (run / "eval" / "metrics.json").is_file()


def test_console_script_runs():
    exe = subprocess.run([sys.executable, "-m", "onefield.app.cli", "info"], capture_output=True, text=True, check=True)
    assert "onefield" in exe.stdout


def test_process_command(data_root, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sorted((data_root / "sceaux-castle" / "images").iterdir())[:4]:
        (photos / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "dataset"
    assert main(["process", str(photos), "--out", str(out), "--config.max-side", "500"]) == 0
    printed = capsys.readouterr().out
    assert "registered 4 / 4 images" in printed and str(out.resolve()) in printed
    assert (out / "transforms.json").is_file()
    assert main(["process", str(photos), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint(shapes_scene, tmp_path):
    """A real SIGINT to a running `onefield fit`: exit code 130, a checkpoint of the step it
    reached, and the command that resumes it."""
    import signal
    import time

    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "onefield.app.cli", "fit", str(shapes_scene.root), "--steps",
                             "100000", "--out", str(out), *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/hashgrid/*/metrics.jsonl"))
        if found and found[0].read_text().count("\n") >= 2:  # at least 100 steps logged
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "onefield resume" in stderr
    state = json.loads((metrics.parent / "checkpoints" / "latest" / "trainer.json").read_text())["state"]
    assert state["step"] >= 100
