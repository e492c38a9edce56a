"""Batch runs: plans from files and options, a local pool and a real loopback Ray cluster running the same
cells to the same results, reruns that skip finished cells, a broken cell failing alone, a SIGKILLed
worker resuming its cell from the last checkpoint, and the report rebuilt from the run folders."""

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from backend_configs import SMALL

from onefield.app.batch.cell import ATTEMPTS, CELL_FILE, THUMBNAIL, is_done, run_cell
from onefield.app.batch.plan import Cell, make_plan, read_plan_file
from onefield.app.batch.pool import CellState, default_layout, eta_seconds
from onefield.app.checkpoint import MissingRunFile, find_checkpoint
from onefield.app.cli import main
from onefield.app.view import checkpoint_key
from onefield.errors import UserError
from onefield.scenes import make_shapes_scene

BIN = Path(sys.executable).parent
STEPS, CHECKPOINT_EVERY = 300, 100
FIELDS = {"hashgrid": SMALL["hashgrid"], "triplane": SMALL["triplane"]}
TRAINER = {"target_samples": 4096, "render_steps": 256, "checkpoint_every": CHECKPOINT_EVERY, "eval_every": 100}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two tiny shapes scenes (a, b) and one whose transforms file is cut off (broken)."""
    root = tmp_path_factory.mktemp("scenes")
    for name in ("a", "b", "broken"):
        make_shapes_scene(root / name, n_train=16, n_test=4, size=32)
    (root / "broken" / "transforms_train.json").write_text('{"camera_angle_x": 0.69, "frames": [')
    return root


def write_plan(folder: Path, scenes: Path, out: str, broken: bool = True) -> Path:
    plan = {"out": out, "steps": STEPS, "scenes": [str(scenes / s) for s in ("a", "b", "broken")[:3 if broken else 2]],
            "fields": FIELDS, "trainer": TRAINER, "distill": [{"from": "hashgrid", "to": "triplane", "steps": 100,
                                                               "options": SMALL["triplane"]}],
            "export": ["mesh"], "mesh": {"resolution": 64}}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def batch(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "onefield"), "batch", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def rows(out: Path) -> dict[str, dict]:
    return {f"{r['scene']}/{r['teacher'] + '->' if r['teacher'] else ''}{r['backend']}": r
            for r in json.loads((out / "results.json").read_text())}


def attempts(run_dir: Path) -> list[dict]:
    path = run_dir / ATTEMPTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def logged_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["event"] == "train"]


def kill_mid_fit(run_dir: Path, after_step: int, process: subprocess.Popen, timeout: float = 300) -> tuple[int, int]:
    """SIGKILL the worker of the cell in `run_dir` once it has a checkpoint at `after_step` or later; returns
    (the newest checkpoint's step just before the kill, the last step the killed worker logged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            step = checkpoint_key(find_checkpoint(run_dir))[0]
        except (MissingRunFile, FileNotFoundError):  # none yet, or the save renamed the folder found (`open_view`)
            step = None
        tries = attempts(run_dir)
        if step is not None and step >= after_step and len(tries) == 1:
            os.kill(tries[0]["pid"], signal.SIGKILL)
            while Path(f"/proc/{tries[0]['pid']}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # gone (or a zombie, which writes nothing)
            return step, logged_steps(run_dir)[-1]
        time.sleep(0.02)
    raise AssertionError(f"{run_dir} never reached a checkpoint at step {after_step}: {process.communicate()[0]}")


# ---- plans ---------------------------------------------------------------------------------------
def test_yaml_and_toml_plans_give_the_same_cells_at_fixed_run_folders(scenes, tmp_path):
    (tmp_path / "plan.toml").write_text(f"""out = "runs"
minutes = 1.5
downscale = 2
scenes = ["{scenes / 'a'}", {{path = "{scenes / 'b'}", downscale = 1}}]
export = "mesh"
[fields.hashgrid]
log2_table_size = 15
[fields.tensorf-cp]
[[distill]]
from = "hashgrid"
to = "mlp"
steps = 500
""")
    (tmp_path / "plan.yml").write_text(yaml.safe_dump({
        "out": "runs", "minutes": 1.5, "downscale": 2, "export": "mesh",
        "scenes": [str(scenes / "a"), {"path": str(scenes / "b"), "downscale": 1}],
        "fields": {"hashgrid": {"log2_table_size": 15}, "tensorf-cp": None},
        "distill": [{"from": "hashgrid", "to": "mlp", "steps": 500}]}))
    toml, yml = (make_plan(read_plan_file(tmp_path / f"plan.{ext}"), tmp_path) for ext in ("toml", "yml"))
    assert toml.cells() == yml.cells()
    cells = toml.cells()
    out = (tmp_path / "runs").resolve()
    assert [c.run_dir for c in cells] == [str(out / s / f / d) for s, f, d in [
        ("a", "hashgrid", "batch"), ("a", "tensorf-cp", "batch"), ("b", "hashgrid", "batch"),
        ("b", "tensorf-cp", "batch"), ("a", "mlp", "from-hashgrid"), ("b", "mlp", "from-hashgrid")]]
    assert [c.data["downscale"] for c in cells[:4]] == [2, 2, 1, 1]
    assert cells[0].field_options == {"log2_table_size": 15} and cells[1].field_options == {}
    assert cells[0].trainer["minutes"] == 1.5 and cells[0].trainer["checkpoint_every"] == 250
    assert cells[4].teacher == cells[0].run_dir and cells[4].trainer["steps"] == 500
    assert cells[4].trainer["minutes"] is None and cells[4].key == "a/hashgrid->mlp"
    assert all(c.mesh is not None and c.gt_mesh == str(scenes / c.scene / "mesh.ply") for c in cells)


@pytest.mark.parametrize("change, message", [
    ({"epochs": 3}, r"plan.yaml: unknown plan key\(s\) epochs"),
    ({"fields": {"hashgrid": {"log2_tabel_size": 15}}}, r"unknown option\(s\) for field 'hashgrid': log2_tabel_size"),
    ({"fields": ["voxels"]}, "voxels"),
    ({"distill": [{"from": "splats", "to": "mlp"}]}, r"distill from 'splats': not a backend of the plan \(hashgrid\)"),
    ({"scenes": ["missing"]}, r"scene missing: .*missing is not a folder"),
    ({"export": ["video"]}, "only 'mesh' is exported"),
    ({"trainer": {"steps_per_eval": 1}}, r"unknown option\(s\) for trainer: steps_per_eval"),
    ({"mesh": {"method": "voxels"}}, "voxels"),
])
def test_a_wrong_plan_fails_before_any_cell_naming_the_mistake(scenes, tmp_path, change, message):
    plan = {"out": str(tmp_path / "out"), "steps": 10, "scenes": [str(scenes / "a")], "fields": ["hashgrid"],
            "export": "mesh", **change}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(UserError, match=message):
        make_plan(read_plan_file(tmp_path / "plan.yaml"), tmp_path)
    assert not (tmp_path / "out").exists()


def test_two_scenes_of_one_name_are_refused(scenes, tmp_path):
    make_shapes_scene(tmp_path / "other" / "a", n_train=2, n_test=1, size=8)
    with pytest.raises(UserError, match="two scenes are named 'a'"):
        make_plan({"steps": 10, "scenes": [str(scenes / "a"), str(tmp_path / "other" / "a")], "fields": ["hashgrid"]})


def test_the_command_line_names_a_missing_budget_and_a_broken_plan_file(scenes, tmp_path, capsys):
    assert main(["batch", "--scenes", str(scenes / "a"), "--fields", "hashgrid", "--out", str(tmp_path)]) == 2
    assert "give each cell a budget" in capsys.readouterr().err
    (tmp_path / "plan.yaml").write_text("scenes: [a\n")
    assert main(["batch", str(tmp_path / "plan.yaml")]) == 2
    assert "plan.yaml: not a valid plan file" in capsys.readouterr().err


def test_layout_fills_the_machine_and_eta_counts_the_cells_left():
    assert default_layout(None, None, "cpu", cores=16) == (8, 2)
    assert default_layout(4, None, "cpu", cores=16) == (4, 4)
    assert default_layout(None, 3, "cpu", cores=16) == (5, 3)
    assert default_layout(None, None, "cpu", cores=1) == (1, 1)
    assert default_layout(None, None, "cuda", cores=16) == (1, 2)
    with pytest.raises(UserError, match="at least 1"):
        default_layout(0, 2, "cpu")
    cell = make_plan({"minutes": 2, "scenes": [str(Path(__file__).parent)], "fields": ["hashgrid", "mlp"]}).cells()
    done, running, pending = CellState(cell[0], "done", {"wall_seconds": 100.0}), CellState(cell[1], "running"), \
        CellState(cell[1], "pending")
    running.started = 1000.0
    # each cell left is expected to take the finished cell's 100 s; the running one has had 30 of them
    assert eta_seconds([done, running, pending], 2, now=1030.0) == pytest.approx((70 + 100) / 2)
    # before any cell finished: the 2-minute budget
    assert eta_seconds([running, pending], 1, now=1030.0) == pytest.approx(90 + 120)


# ---- a local batch -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_batch(scenes, tmp_path_factory):
    """The plan run by the local pool, 2 jobs of 1 thread: (plan file, output root, exit code, output)."""
    folder = tmp_path_factory.mktemp("local")
    plan = write_plan(folder, scenes, "out")
    process = batch(str(plan), "--jobs", "2", "--threads", "1")
    output = process.communicate(timeout=900)[0]
    return plan, folder / "out", process.returncode, output


def test_a_local_batch_runs_every_cell_and_a_broken_dataset_fails_alone(local_batch, scenes):
    plan, out, code, output = local_batch
    assert code == 1, output  # a cell failed
    results = rows(out)
    assert set(results) == {f"{s}/{c}" for s in ("a", "b", "broken") for c in ("hashgrid", "triplane", "hashgrid->triplane")}
    for scene in ("a", "b"):
        for key in ("hashgrid", "triplane", "hashgrid->triplane"):
            r = results[f"{scene}/{key}"]
            assert r["status"] == "done" and r["error"] is None, r
            assert r["steps"] == (100 if "->" in key else STEPS) and r["psnr"] > 14 and 0 < r["ssim"] <= 1
            assert r["size_mb"] > 0 and r["seconds"] > 0 and 0 < r["fscore"] <= 1 and r["chamfer"] > 0
            run = Path(r["run"])
            assert run.parent.name == (key.split("->")[-1]) and run.name == ("from-hashgrid" if "->" in key else "batch")
            assert (run / THUMBNAIL).is_file() and (run / "exports" / "mesh-mc.eval.json").is_file()
    broken = results["broken/hashgrid"]
    assert broken["status"] == "failed" and "transforms_train.json" in broken["error"], broken
    assert "its teacher" in results["broken/hashgrid->triplane"]["error"]
    assert "failed" in output and "report:" in output
    # the two identical scenes give the same numbers: every cell is seeded
    assert results["a/hashgrid"]["psnr"] == results["b/hashgrid"]["psnr"]


def test_the_report_has_every_cell_curves_thumbnails_and_the_best_marked(local_batch):
    _, out, _, _ = local_batch
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 9 and {r["status"] for r in table} == {"done", "failed"}
    assert float(next(r for r in table if r["scene"] == "a" and r["backend"] == "hashgrid" and not r["teacher"])["psnr"]) \
        == pytest.approx(rows(out)["a/hashgrid"]["psnr"])
    page = (out / "report.html").read_text()
    assert page.count("<h2>") == 3 and page.count("<svg") == 2  # the broken scene has no curves
    assert page.count("data:image/png;base64,") == 6 and page.count("★") >= 4  # PSNR and F-score, per scene
    # training PSNR of 6 cells; held-out PSNR of the 4 fits (steps 100, 200, 300; the students have one point)
    assert page.count("<polyline") == 10
    assert "transforms_train.json" in page


def test_running_the_plan_again_skips_every_finished_cell(local_batch):
    plan, out, _, _ = local_batch
    before = {k: attempts(Path(v["run"])) for k, v in rows(out).items()}
    process = batch(str(plan), "--jobs", "2", "--threads", "1")
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output  # the broken scene was tried again and failed again
    assert "6 finished before" in output
    after = {k: attempts(Path(v["run"])) for k, v in rows(out).items()}
    assert after == before and all(len(a) == 1 for k, a in after.items() if not k.startswith("broken"))
    counts = json.loads((out / "batch.json").read_text())["counts"]
    assert counts["skipped"] == 6 and counts["failed"] == 3 and counts["done"] == 0


def test_onefield_report_rebuilds_the_report_from_the_run_folders(local_batch, capsys):
    _, out, _, _ = local_batch
    expected = json.loads((out / "results.json").read_text())
    for name in ("results.json", "results.csv", "report.html"):
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert "9 cell(s)" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text()) == expected
    assert (out / "results.csv").is_file() and (out / "report.html").is_file()
    assert main(["report", str(out / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_killed_local_worker_resumes_its_cell_from_the_last_checkpoint(local_batch, scenes, tmp_path):
    _, local_out, _, _ = local_batch
    plan = write_plan(tmp_path, scenes, "out", broken=False)
    raw = yaml.safe_load(plan.read_text())  # the local batch's a/hashgrid cell alone
    raw |= {"scenes": raw["scenes"][:1], "fields": {"hashgrid": FIELDS["hashgrid"]}, "distill": []}
    plan.write_text(yaml.safe_dump(raw))
    run = tmp_path / "out" / "a" / "hashgrid" / "batch"
    process = batch(str(plan), "--jobs", "1", "--threads", "1")
    checkpoint, reached = kill_mid_fit(run, CHECKPOINT_EVERY, process)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    first, second = attempts(run)
    assert second["resumed_from"] >= checkpoint and second["pid"] != first["pid"]
    assert reached < second["resumed_from"] + CHECKPOINT_EVERY  # lost less than one checkpoint interval
    got, expected = rows(tmp_path / "out")["a/hashgrid"], rows(local_out)["a/hashgrid"]
    assert got["status"] == "done" and got["steps"] == STEPS
    assert got["psnr"] == expected["psnr"] and got["fscore"] == expected["fscore"]  # resumed bit-exactly


# ---- a Ray cluster -------------------------------------------------------------------------------
@pytest.fixture
def ray_cluster(free_port):
    """A one-node Ray cluster on the loopback interface with 2 CPUs; its address. (Its session folder is
    short: Ray's unix sockets live there, and their paths may not exceed 107 bytes.)"""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard=false",
                              f"--temp-dir={temp}"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_batch_survives_a_killed_worker_and_equals_the_local_run(local_batch, scenes, ray_cluster, tmp_path):
    _, local_out, _, _ = local_batch
    plan = write_plan(tmp_path, scenes, "out")
    out = tmp_path / "out"
    process = batch(str(plan), "--ray", ray_cluster, "--threads", "1")
    run = out / "a" / "hashgrid" / "batch"
    checkpoint, reached = kill_mid_fit(run, CHECKPOINT_EVERY, process)
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 1, output  # the broken scene
    assert "ray 127.0.0.1" in output and "2 task(s) x 1 CPU(s)" in output
    first, second = attempts(run)
    assert second["resumed_from"] >= checkpoint and second["pid"] != first["pid"]
    assert reached < second["resumed_from"] + CHECKPOINT_EVERY
    got, expected = rows(out), rows(local_out)
    assert got.keys() == expected.keys()
    for key, r in got.items():
        assert r["status"] == expected[key]["status"], key
        if r["status"] == "done":
            assert (r["psnr"], r["ssim"], r["steps"], r["fscore"]) == \
                (expected[key]["psnr"], expected[key]["ssim"], expected[key]["steps"], expected[key]["fscore"]), key
            if key != "a/hashgrid":
                assert len(attempts(Path(r["run"]))) == 1, key  # nothing of the others


def test_a_folder_holding_another_plans_cell_is_refused_and_left_as_it_is(local_batch):
    _, out, _, _ = local_batch
    run = out / "a" / "hashgrid" / "batch"
    cell = Cell(**json.loads((run / CELL_FILE).read_text())["cell"])
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    other = dataclasses.replace(cell, field_options={**cell.field_options, "n_levels": 8})
    record = run_cell(other)  # threads left alone: this is the test process
    assert record["status"] == "failed" and "holds a cell of another plan" in record["error"], record
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    longer = dataclasses.replace(cell, trainer={**cell.trainer, "steps": STEPS + 20})  # only the budget grew
    assert not is_done(longer) and is_done(cell)
