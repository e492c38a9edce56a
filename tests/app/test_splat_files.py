"""Splat interchange: the 3DGS PLY layout written and read back bit-exactly, a PLY from gsplat's own
exporter imported as a run that renders what the original did, the .splat format, and bad files."""

import json

import numpy as np
import pytest
import torch

from onefield.app.checkpoint import save_checkpoint
from onefield.app.cli import main
from onefield.app.evaluate import run_renderer
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.splat_files import Similarity, mapped, read_ply, write_ply, write_splat
from onefield.app.trainer import TrainerConfig
from onefield.errors import UserError


def random_parameters(n: int = 50, k: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    f = lambda *shape: g.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {"means": f(n, 3), "log_scales": f(n, 3), "quats": f(n, 4), "opacity_logits": f(n), "sh0": f(n, 1, 3),
            "shN": f(n, k - 1, 3)}


def test_ply_round_trip_is_bit_exact_in_the_3dgs_layout(tmp_path):
    p = random_parameters()
    write_ply(tmp_path / "a.ply", p)
    raw = (tmp_path / "a.ply").read_bytes()
    header = raw[: raw.index(b"end_header\n")].decode().splitlines()
    names = [line.split()[2] for line in header if line.startswith("property")]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(line.startswith("property float ") for line in header if line.startswith("property"))
    body = np.frombuffer(raw[raw.index(b"end_header\n") + 11:], "<f4").reshape(50, 62)
    assert np.array_equal(body[:, 9:24], p["shN"][:, :, 0])  # channel-major: every red coefficient first
    back = read_ply(tmp_path / "a.ply")
    for name, value in p.items():
        assert back[name].dtype == np.float32 and np.array_equal(back[name], value), name


def test_frame_mapping_inverts():
    p = random_parameters(k=1)
    a = torch.tensor([[0.0, -2.0, 0.0, 0.3], [2.0, 0.0, 0.0, -1.0], [0.0, 0.0, 2.0, 0.5]])  # 2 x a quarter turn + shift
    frame = Similarity.of(a)
    assert frame.scale == pytest.approx(2.0) and frame.rotates
    there = mapped(p, frame, inverse=False)
    np.testing.assert_allclose(there["means"], p["means"] @ a[:, :3].numpy().T + a[:, 3].numpy(), atol=1e-5)
    back = mapped(there, frame, inverse=True)
    for name in ("means", "log_scales"):
        np.testing.assert_allclose(back[name], p[name], atol=1e-5)
    q, r = back["quats"], p["quats"]  # the same rotation (q and -q)
    np.testing.assert_allclose(np.abs((q * r).sum(1)), np.linalg.norm(q, axis=1) * np.linalg.norm(r, axis=1), rtol=1e-5)


@pytest.fixture(scope="module")
def splat_run(shapes_scene, tmp_path_factory):
    splats = {"init_count": 500, "max_gaussians": 1000, "sh_degree": 1, "sh_degree_every": 20, "refine_start": 10,
              "refine_every": 10}
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "splats", splats,
                        TrainerConfig(steps=60, eval_every=0, checkpoint_every=0), tmp_path_factory.mktemp("runs"))
    for _ in job.trainer.iterate():
        pass
    save_checkpoint(job.run_dir, job.trainer)
    return job


def test_a_gsplat_ply_imports_as_a_run_that_renders_the_same(splat_run, shapes_scene, tmp_path, capsys):
    from gsplat.exporter import export_splats

    model = splat_run.trainer.model
    ply = tmp_path / "gsplat.ply"
    export_splats(model.means.detach(), model.log_scales.detach(), model.quats.detach(), model.opacity_logits.detach(),
                  model.sh0.detach(), model.shN.detach(), format="ply", save_to=str(ply))
    assert main(["import-splats", str(ply), "--data", str(shapes_scene.root), "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs" / shapes_scene.root.name / "splats").iterdir())
    _, imported, *_ = run_renderer(run, "cpu")
    _, original, _, held_out, _ = run_renderer(splat_run.run_dir, "cpu")
    assert len(imported.model) == len(model)
    for i in range(2):
        a = imported.render_view(held_out.cameras, i)["rgb"]
        b = original.render_view(held_out.cameras, i)["rgb"]
        assert torch.equal(a, b)
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["field"] == "splats" and metrics["mean"]["psnr"] > 15
    assert main(["export", "mesh", str(run), "--resolution", "48"]) == 0


def test_export_splats_writes_ply_and_splat(splat_run, tmp_path):
    assert main(["export", "splats", str(splat_run.run_dir), "--out", str(tmp_path / "s.ply")]) == 0
    p = read_ply(tmp_path / "s.ply")
    model = splat_run.trainer.model
    assert np.array_equal(p["means"], model.means.detach().numpy())  # the Blender frame is onefield's
    assert np.array_equal(p["shN"], model.shN.detach().numpy())
    assert main(["export", "splats", str(splat_run.run_dir), "--splat-format", "splat", "--out", str(tmp_path / "s.splat")]) == 0
    raw = np.frombuffer((tmp_path / "s.splat").read_bytes(), np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3),
                                                                       ("rgba", "u1", 4), ("rot", "u1", 4)]))
    assert len(raw) == len(model)
    write_splat(tmp_path / "t.splat", p)
    assert (tmp_path / "t.splat").read_bytes() == (tmp_path / "s.splat").read_bytes()
    most = int(np.argmax(model.scales.detach().prod(1).numpy() * model.opacities.detach().numpy()))
    np.testing.assert_allclose(raw["pos"][0], p["means"][most])  # the most visible first


def test_volumetric_runs_are_refused_and_bad_files_named(fitted_shapes, tmp_path, capsys):
    assert main(["export", "splats", str(fitted_shapes.run_dir)]) == 2
    assert "has no Gaussians" in capsys.readouterr().err
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    with pytest.raises(UserError, match="binary little-endian"):
        read_ply(bad)
    write_ply(bad, random_parameters(3))
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        read_ply(bad)
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n" + b"\0" * 4)
    with pytest.raises(UserError, match="no y, z, f_dc_0"):
        read_ply(bad)
