"""The GUI end to end through gradio_client against a launched app: photos uploaded and processed,
two fits queued on the demo scene (the second waits its turn), a view rendered, a mesh exported and
downloaded in three formats and re-read with trimesh, two runs compared, sessions kept apart, a run
converted into another backend and that conversion resumed, and a restarted GUI that lists the runs
and resumes one."""

import inspect
import json
import math
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import imageio.v3 as iio
import trimesh
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backend_configs import SMALL
from conftest import SHAPES_FIELD, SHAPES_TRAINER
from onefield.app import cli
from onefield.app.checkpoint import find_checkpoint
from onefield.app.gui import launch
from onefield.app.gui.page import DEMO

FIT = {"log2_table_size": 15, "max_resolution": 256}  # small: each fit takes seconds
FIT_CP = {"density_rank": 16, "app_rank": 48, "resolution_final": 128}  # TensoRF-CP's 500^3 default: 0.3 s a step
STEPS = 120


def values(options, **overrides):
    """A generated form's inputs: the defaults, with `overrides` by option name."""
    return [overrides.get(o.name.replace(".", "__"), o.default) for o in options]


def load_step(run: Path) -> int:
    return json.loads((find_checkpoint(run) / "trainer.json").read_text())["state"]["step"]


def wait(client, sid, job, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.predict(sid, job, api_name="/job")
        if state["finished"]:
            return state
        time.sleep(0.5)
    raise TimeoutError(job)


@pytest.fixture(scope="module")
def app(tmp_path_factory, free_port):
    workspace = tmp_path_factory.mktemp("workspace")
    page, gui = launch(workspace, port=free_port(), block=False)
    yield page, gui, Client(page.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    page.close()


@pytest.fixture(scope="module")
def fitted(app):
    """Two fits submitted at once: the second is queued behind the first, then both finish."""
    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    first = client.predict(sid, DEMO, "hashgrid", FIT, {}, None, STEPS, 1.0, api_name="/fit")
    second = client.predict(sid, DEMO, "tensorf-cp", FIT_CP, {}, None, STEPS, 1.0, api_name="/fit")
    queued = gui.trainings.state(second, sid)
    assert queued.status == "queued" and queued.queue_position == 1
    runs = [wait(client, sid, job) for job in (first, second)]
    assert [r["status"] for r in runs] == ["done", "done"], runs
    return sid, [r["result"] for r in runs]


def test_photos_are_uploaded_checked_and_processed(app, data_root):
    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    photos = sorted((data_root / "sceaux-castle" / "images").iterdir())[:6]
    message, cleared = client.predict(sid, [handle_file(p) for p in photos],
                                      *values(gui.forms.process, max_side=600, num_threads=2), api_name="/upload")
    assert "6 file(s) accepted" in message and cleared["value"] is None  # the file input is emptied
    job = message.rsplit(" ", 1)[-1]
    state = wait(client, sid, job)
    assert state["status"] == "done", state
    result = state["result"]
    assert result["total"] == 6 and len(result["registered"]) + len(result["failed"]) == 6
    assert len(result["registered"]) >= 5
    figure, text = client.predict(sid, result["dataset"], api_name="/dataset")
    assert Path(result["dataset"]).name in text and figure is not None


def test_fit_view_export_download_and_reread(app, fitted):
    page, gui, client = app
    sid, (run, _) = fitted
    image = np.asarray(Image.open(client.predict(sid, run, 30, 20, 4.0, 40, "rgb", 128, api_name="/render")))
    assert image.shape[:2] == (128, 128) and image.std() > 10  # the shapes, not a blank frame
    glb, downloads, report = client.predict(sid, run, *values(gui.forms.mesh, resolution=64), api_name="/export_mesh")
    assert "faces" in report
    by_suffix = {Path(p).suffix: Path(p) for p in downloads}
    assert {".ply", ".obj", ".glb", ".json"} <= set(by_suffix)
    for suffix in (".ply", ".obj", ".glb"):
        mesh = trimesh.load(by_suffix[suffix], force="mesh")
        assert len(mesh.faces) > 1000
        assert np.abs(mesh.bounds).max() < 1.6  # inside the shapes scene's box
    assert Path(glb).suffix == ".glb"
    # the exported files also stay in the run folder
    assert (Path(run) / "exports" / "mesh-mc.obj").is_file()


def test_splats_fit_show_and_export_as_splats(app):
    """A splats run trains, renders in the viewer and is exported as the 3DGS PLY that gr.Model3D shows."""
    from onefield.app.splat_files import read_ply

    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    splats = {"init_count": 1000, "max_gaussians": 2000, "sh_degree": 1}
    state = wait(client, sid, client.predict(sid, DEMO, "splats", splats, {}, None, 60, 1.0, api_name="/fit"))
    assert state["status"] == "done", state
    run = state["result"]
    image = np.asarray(Image.open(client.predict(sid, run, 30, 20, 4.0, 40, "rgb", 96, api_name="/render")))
    assert image.shape[:2] == (96, 96) and image.std() > 10
    shown, downloads, report = client.predict(sid, run, api_name="/export_splats")
    assert Path(shown).suffix == ".ply" and "Gaussians" in report
    assert {Path(p).suffix for p in downloads} == {".ply", ".splat"}
    assert len(read_ply(Path(shown))["means"]) == int(report.split(": ")[-1].split()[0].replace(",", ""))
    with pytest.raises(AppError, match="has no Gaussians"):
        client.predict(sid, *_first_volume_run(client, sid), api_name="/export_splats")


def _first_volume_run(client, sid):
    """A hashgrid run of this session (a tiny fit)."""
    state = wait(client, sid, client.predict(sid, DEMO, "hashgrid", FIT, {}, None, 10, 1.0, api_name="/fit"))
    return (state["result"],)


def test_convert_distills_a_run_into_another_backend_and_resumes_it(app, shapes_scene):
    """Convert: a tiny hash-grid teacher, distilled through /distill into TensoRF-CP; the new run records
    its teacher and its quality report, the Convert panel shows it, and the Runs page resumes it as a
    distillation (not as a fit, which would lose the teacher)."""
    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    scene = shutil.copytree(shapes_scene.root, gui.workspace.session(sid).data / "shapes")
    fit = client.predict(sid, str(scene), "hashgrid", SHAPES_FIELD, SHAPES_TRAINER, None, 100, 1.0, api_name="/fit")
    teacher = wait(client, sid, fit)
    assert teacher["status"] == "done", teacher
    with pytest.raises(AppError, match="unknown option.*distill: nope"):
        client.predict(sid, teacher["result"], "tensorf-cp", {}, {"nope": 1}, None, 10, api_name="/distill")
    other = client.predict(None, api_name="/session")[0]
    with pytest.raises(AppError, match="outside this session's workspace"):  # the one path check
        client.predict(other, teacher["result"], "tensorf-cp", {}, {}, None, 10, api_name="/distill")

    job = client.predict(sid, teacher["result"], "tensorf-cp", SMALL["tensorf-cp"], {"report_views": 2}, None, 100,
                         api_name="/distill")
    assert job.startswith("distill-")
    state = wait(client, sid, job)
    assert state["status"] == "done", state
    run = Path(state["result"])
    config = json.loads((run / "config.json").read_text())
    assert config["field"] == "tensorf-cp" and run.is_relative_to(gui.workspace.session(sid).runs)
    assert Path(config["distill"]["teacher"]) == Path(teacher["result"]).resolve()
    assert config["distill"]["report_views"] == 2  # the options reached the engine
    assert (find_checkpoint(run) / "model.safetensors").is_file() and load_step(run) == 100
    report = state["report"]
    assert report["student_field"] == "tensorf-cp" and report["teacher_field"] == "hashgrid"
    for key in ("student_psnr", "teacher_psnr", "fidelity_psnr"):
        assert math.isfinite(report[key]) and report[key] > 5, report
    # the Convert panel (the poll's second live panel) shows the report and the distillation's curves
    status, loss = gui.poll(sid)[4:6]
    assert f"student (tensorf-cp) {report['student_psnr']:.2f} dB" in status
    assert f"random views: {report['fidelity_psnr']:.2f} dB" in status
    assert len(loss) >= 5
    with pytest.raises(AppError, match="no conversion is running"):  # Convert's buttons act on its distillations
        client.predict(sid, api_name="/pause_distill")

    client.predict(sid, str(run), 0.02, api_name="/resume_run")
    resumed = gui.latest(sid, "distill")
    assert resumed.id != job and resumed.info["run"] == str(run)
    state = wait(client, sid, resumed.id)
    assert state["status"] == "done" and state["report"]["steps"] > 100, state
    assert json.loads((run / "config.json").read_text())["distill"] == config["distill"]


def test_compare_renders_each_run_from_one_camera(app, fitted):
    page, gui, client = app
    sid, runs = fitted
    table, image = client.predict(sid, runs, "rgb", 96, api_name="/compare")
    assert [row[2] for row in table["data"]] == ["hashgrid", "tensorf-cp"]
    psnr = table["headers"].index("psnr")
    assert all(row[psnr] > 12 for row in table["data"]), table
    assert np.asarray(Image.open(image)).shape[1] >= 2 * 96  # side by side


def test_compare_opens_a_batch_lists_its_cells_and_compares_them(app, shapes_scene, tmp_path):
    from onefield.app.batch import make_plan, run_batch

    page, gui, client = app
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "transforms.json").write_text("{")
    out = gui.workspace.shared_runs / "nightly"
    plan = make_plan({"out": str(out), "steps": 100, "scenes": [str(shapes_scene.root), str(broken)],
                      "fields": {"hashgrid": SHAPES_FIELD}, "trainer": SHAPES_TRAINER})
    run_batch(plan, jobs=1, threads=2)
    sid = client.predict(None, api_name="/session")[0]
    session = gui.workspace.session(sid)
    assert gui.batch_choices(session) == [("shared/runs/nightly", str(out))]
    cell = str(out / shapes_scene.root.name / "hashgrid" / "batch")
    assert (f"nightly / {shapes_scene.root.name} / hashgrid / batch (shared)", cell) in gui.run_choices(session)

    files = lambda: {p: p.stat().st_mtime_ns for p in out.rglob("*")}  # noqa: E731
    before = files()
    table, report, download, chosen = client.predict(sid, str(out), api_name="/open_batch")
    status, error = table["headers"].index("status"), table["headers"].index("error")
    assert sorted(row[status] for row in table["data"]) == ["done", "failed"]
    assert any("transforms.json" in str(row[error]) for row in table["data"])
    assert report.startswith("<iframe") and "held-out view" in report and "base64" in report
    assert "<h2>" in Path(download).read_text() and files() == before  # a shared batch is read-only
    assert chosen["value"] == [cell]  # the finished cells, chosen for Compare
    rows, image = client.predict(sid, chosen["value"], "rgb", 64, api_name="/compare")
    assert rows["data"][0][rows["headers"].index("psnr")] > 12
    other = client.predict(None, api_name="/session")[0]
    private = gui.workspace.session(sid).runs / "mine"
    shutil.copytree(out, private)
    with pytest.raises(AppError, match="outside this session's workspace"):
        client.predict(other, str(private), api_name="/open_batch")
    with pytest.raises(AppError, match="not a batch output folder"):
        client.predict(sid, cell, api_name="/open_batch")


def test_sessions_are_kept_apart_and_paths_stay_inside(app, fitted):
    page, gui, client = app
    sid, (run, _) = fitted
    other = client.predict(None, api_name="/session")[0]
    assert other != sid
    with pytest.raises(AppError, match="outside this session's workspace"):
        client.predict(other, run, 30, 20, 4.0, 40, "rgb", 64, api_name="/render")
    with pytest.raises(AppError, match="outside this session's workspace"):
        client.predict(sid, str(Path(run) / ".." / ".." / ".." / ".." / ".." / ".."), api_name="/dataset")
    with pytest.raises(AppError, match="no job"):
        client.predict(other, "fit-1", api_name="/job")
    # a malformed session id is never a path: it starts a new, empty session, and only the page's
    # start does that; any other request with an unknown id is refused
    assert client.predict("../../etc", api_name="/session")[0] not in ("../../etc", sid)
    with pytest.raises(AppError, match="reload the page"):
        client.predict("0" * 32, run, 30, 20, 4.0, 40, "rgb", 64, api_name="/render")
    with pytest.raises(AppError, match="maximum value|image size"):
        client.predict(sid, run, 30, 20, 4.0, 40, "rgb", 100_000, api_name="/render")


def test_hostile_upload_is_refused_and_leaves_nothing(app, tmp_path):
    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.png", b"\x89PNG not really")
        z.writestr("../escape.png", b"x")
    with pytest.raises(AppError, match="escape.png"):
        client.predict(sid, [handle_file(evil)], *values(gui.forms.process), api_name="/upload")
    uploads = gui.workspace.session(sid).uploads
    assert list(uploads.iterdir()) == []
    assert not (uploads.parent.parent / "escape.png").exists()


def test_restarted_gui_lists_the_runs_and_resumes_one(app, fitted, tmp_path, free_port):
    page, gui, client = app
    sid, (run, _) = fitted
    page2, gui2 = launch(gui.workspace.root, port=free_port(), block=False)
    try:
        client2 = Client(page2.local_url, verbose=False, download_files=str(tmp_path))
        listed = client2.predict(sid, api_name="/session")
        assert listed[0] == sid
        runs_table = listed[-3]  # then the banner and the batch folders
        assert "runs/shapes-demo/hashgrid/" + Path(run).name in [row[0] for row in runs_table["data"]]
        assert not any(sid in str(cell) for row in runs_table["data"] for cell in row)  # the key is never shown
        client2.predict(sid, run, 0.05, api_name="/resume_run")
        job = gui2.latest(sid, "fit")
        state = wait(client2, sid, job.id)
        assert state["status"] == "done", state
        assert gui2.trainings.state(job.id, sid).info["step"] > STEPS  # it went on from where it ended
    finally:
        page2.close()


def wait_for(condition, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.2)


def test_pause_frees_the_worker_resume_goes_on_and_stop_keeps_the_work(app):
    page, gui, client = app
    sid = client.predict(None, api_name="/session")[0]
    job = client.predict(sid, DEMO, "hashgrid", FIT, {"checkpoint_every": 0}, 10, None, 1.0, api_name="/fit")
    state = gui.trainings.state(job, sid)
    wait_for(lambda: state.info.get("step", 0) >= 20)
    client.predict(sid, api_name="/pause")
    wait_for(lambda: state.status == "paused")
    run = Path(state.info["run"])
    paused_at = state.info["step"]
    assert load_step(run) == paused_at  # pausing saved the run
    # a paused training holds no worker: another one runs meanwhile
    other = client.predict(sid, DEMO, "hashgrid", FIT, {}, None, 30, 1.0, api_name="/fit")
    assert wait(client, sid, other)["status"] == "done"
    assert state.status == "paused" and state.info["step"] == paused_at  # nothing trained while paused
    client.predict(sid, api_name="/resume")
    wait_for(lambda: state.status == "running" and state.info["step"] > paused_at + 5)
    assert Path(state.info["run"]) == run  # the same run goes on from its checkpoint
    client.predict(sid, api_name="/stop")
    final = wait(client, sid, job)
    assert final["status"] == "stopped"
    assert load_step(run) == state.info["step"] > paused_at  # stopping saved it too: resumable
    with pytest.raises(AppError, match="no training is running"):
        client.predict(sid, api_name="/pause")


def test_a_failed_job_shows_its_error_and_the_page_goes_on(app, fitted):
    page, gui, client = app
    sid, (run, _) = fitted
    broken = gui.workspace.session(sid).data / "not-a-dataset"
    broken.mkdir()
    job = client.predict(sid, str(broken), "hashgrid", FIT, {}, None, 50, 1.0, api_name="/fit")
    state = wait(client, sid, job)
    assert state["status"] == "failed" and "not-a-dataset" in state["error"]
    image = client.predict(sid, run, 0, 20, 4.0, 40, "depth", 48, api_name="/render")
    assert np.asarray(Image.open(image)).shape[:2] == (48, 48)


def test_turntable_and_point_cloud(app, fitted):
    page, gui, client = app
    sid, (run, _) = fitted
    video = client.predict(sid, run, 20, 3.6, 40, "rgb", 48, api_name="/turntable")
    video = video["video"] if isinstance(video, dict) else video
    assert len(iio.imread(video)) == 48
    cloud, message = client.predict(sid, run, *values(gui.forms.mesh), api_name="/export_pointcloud")
    points = trimesh.load(cloud)
    assert len(points.vertices) > 500 and f"{len(points.vertices):,} points" in message


def test_serves_this_machine_only_unless_told(app):
    page, gui, client = app
    assert page.local_url.startswith("http://127.0.0.1:") and not page.share
    defaults = inspect.signature(cli.gui).parameters
    assert defaults["host"].default == "127.0.0.1" and defaults["share"].default is False
