"""TensoRF's coarse-to-fine machinery, rank growth and slimming, and F-INR's decompositions."""

import json
from dataclasses import replace

import pytest
import torch

from onefield import fields
from onefield.app.cli import main
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec, load_trained
from onefield.app.trainer import TrainerConfig
from onefield.fields.finr import FINRConfig, FINRField
from onefield.fields.ranks import active_rank
from onefield.renderers import OccupancyGrid

from backend_configs import SMALL

AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
SLIMMABLE = ["tensorf-vm", "tensorf-cp", "strivec", "finr"]


def random_points(n: int = 2000, reach: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, 3, generator=g) * 2 - 1) * reach
    return x, torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


@pytest.mark.parametrize("name", ["tensorf-vm", "tensorf-cp"])
def test_upsampling_to_a_nested_grid_keeps_the_field(name):
    """32 -> 63 texels per axis nests the old texels in the new grid: bilinear resampling is then exact."""
    field = fields.build(name, AABB, {**SMALL[name], "rank_init": 1.0})
    x, d = random_points()
    with torch.no_grad():
        before = field.raw(x)
        field._resample_all(field.region.clone(), [63, 63, 63])
        after = field.raw(x)
    assert field.resolution() == [63, 63, 63]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_schedule_upsamples_shrinks_and_grows_the_rank_on_time():
    config = {**SMALL["tensorf-vm"], "rank_init": 0.25, "rank_full_at": 0.5, "rank_stages": 2}
    field = fields.build("tensorf-vm", AABB, config)
    grid = OccupancyGrid(AABB, 32)
    occupied = torch.zeros(32, 32, 32, dtype=torch.bool)
    occupied[8:16, 4:28, 10:20] = True  # an object in part of the box
    grid.bitfield = _pack(occupied)
    assert field.rank == 2 and not field.update_schedule(0.05, grid)
    assert field.update_schedule(0.12, None) is False  # the shrink waits for a trained grid
    assert field.update_schedule(0.12, grid)  # shrink, then the first upsampling
    lo, hi = field.region[:3], field.region[3:]
    torch.testing.assert_close(lo, torch.tensor([8, 4, 10]) / 32 - 1 / 32, atol=1e-6, rtol=0)
    torch.testing.assert_close(hi, torch.tensor([16, 28, 20]) / 32 + 1 / 32, atol=1e-6, rtol=0)
    res = field.resolution()
    assert res[1] > 2 * res[0]  # voxels follow the cropped box's proportions
    assert field.rank == 2
    field.update_schedule(0.3, grid)
    assert field.rank == 5  # half-way: 0.25 + 0.75 / 2 of 8 components
    field.update_schedule(0.6, grid)
    assert field.rank == 8 and field.stage_done == int(field.stage) == 4  # every event applied
    # outside the cropped box the field is empty
    outside = torch.tensor([[-0.9, -0.9, -0.9]])
    with torch.no_grad():
        assert float(field.density(outside)) < 1e-6


def _pack(occupied: torch.Tensor) -> torch.Tensor:
    from onefield.cuda_ext import grid_pack_bits

    return grid_pack_bits(occupied.flatten().float(), 0.5)


def test_active_rank_schedule():
    assert [active_rank(16, p, 0.25, 0.5, 4) for p in (0.0, 0.12, 0.13, 0.3, 0.49, 0.5, 1.0)] == [4, 4, 7, 10, 13, 16, 16]
    assert active_rank(16, 0.0, 1.0, 0.5, 4) == 16


@pytest.mark.parametrize("name", ["tensorf-vm", "tensorf-cp"])
def test_regularizers_reach_the_factors_and_inactive_components_stay_put(name):
    config = {**SMALL[name], "l1_weight": 1e-3, "tv_density": 1e-2, "tv_app": 1e-2, "rank_init": 0.25}
    field = fields.build(name, AABB, config)
    x, d = random_points()
    sigma, rgb = field(x, d)
    losses = field.regularizers()
    assert set(losses) == {"l1", "tv_density", "tv_app"} and all(float(v) > 0 for v in losses.values())
    (rgb.mean() + sigma.mean() + sum(losses.values())).backward()
    k = field.rank
    for factor in [*field.density_planes, *field.density_lines]:
        assert float(factor.grad[..., :k].abs().sum()) > 0
        assert float(factor.grad[..., k:].abs().sum()) == 0.0


@pytest.fixture(scope="module")
def trained_runs(shapes_scene, tmp_path_factory):
    """One short run per slimmable backend (150 steps: enough for rank 1 to be visibly worse)."""
    out = tmp_path_factory.mktemp("slim")
    runs = {}
    for name in SLIMMABLE:
        torch.manual_seed(0)
        config = TrainerConfig(steps=150, target_samples=1 << 12, render_steps=256, eval_every=0, checkpoint_every=0)
        job = FitJob.create(DataSpec(str(shapes_scene.root)), name, SMALL[name], config, out)
        job.run()
        runs[name] = job.run_dir
    return runs


@pytest.mark.parametrize("name", SLIMMABLE)
def test_slimming_shrinks_the_model_and_full_rank_is_lossless(name, trained_runs, capsys):
    run = trained_runs[name]
    _, model, _ = load_trained(run)
    full = model.rank
    ranks = sorted({full, max(1, full // 2), max(1, full // 4), 1})
    assert main(["slim", str(run), "--rank", *map(str, ranks)]) == 0
    assert "curve:" in capsys.readouterr().out
    curve = json.loads((run / "slim" / "curve.json").read_text())["curve"]
    by_rank = {row["rank"]: row for row in curve}
    sizes = [by_rank[k]["parameters"] for k in ranks]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # strictly smaller as the rank falls
    # full rank: the same field, answer for answer, and the same held-out PSNR as the unslimmed run
    x, d = random_points(reach=1.2)
    _, slim_model, _ = load_trained(by_rank[full]["run"])
    with torch.no_grad():
        for a, b in zip(model.eval()(x, d), slim_model.eval()(x, d)):
            assert torch.equal(a, b)
    assert main(["eval", str(run)]) == 0
    unslimmed = json.loads((run / "eval" / "metrics.json").read_text())["mean"]["psnr"]
    assert by_rank[full]["psnr"] == pytest.approx(unslimmed, abs=1e-9)
    assert by_rank[1]["psnr"] < by_rank[full]["psnr"]


def test_slimming_a_backend_without_ranks_is_refused(shapes_scene, tmp_path, capsys):
    config = TrainerConfig(steps=2, target_samples=1 << 12, eval_every=0, checkpoint_every=0)
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "triplane", SMALL["triplane"], config, tmp_path)
    job.run()
    assert main(["slim", str(job.run_dir), "--rank", "2"]) == 2
    assert "has no rank to slim; slimmable backends: finr, strivec, tensorf-cp, tensorf-vm" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["cp", "tucker", "tt"])
def test_finr_modes_match_a_dense_evaluation_of_their_factors(mode):
    field = FINRField(FINRConfig(mode=mode, rank=6, features=5, axis_hidden=16, evaluation="exact", rank_init=1.0), AABB)
    n = 5
    axis = torch.linspace(-1, 1, n)
    with torch.no_grad():
        fx, fy, fz = (net(axis) for net in field.axes)  # factors on the grid's axes
        r, core = 6, field.core
        if mode == "cp":
            dense = torch.einsum("xr,yr,zr,rc->xyzc", fx, fy, fz, core)
        elif mode == "tucker":
            dense = torch.einsum("xi,yj,zk,ijkc->xyzc", fx, fy, fz, core)
        else:
            dense = torch.einsum("xi,yij,zjk,kc->xyzc", fx, fy.view(n, r, r), fz.view(n, r, r), core)
        gx, gy, gz = torch.meshgrid(axis, axis, axis, indexing="ij")
        c = torch.stack([gx, gy, gz], -1).view(-1, 3)
        per_sample = field.combine(*field.factors(c), r)
    torch.testing.assert_close(per_sample, dense.reshape(-1, 5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["cp", "tucker", "tt"])
def test_finr_lattice_equals_exact_on_lattice_nodes(mode):
    exact = FINRField(FINRConfig(mode=mode, rank=4, axis_hidden=16, evaluation="exact", lattice_size=9), AABB)
    lattice = FINRField(replace(exact.config, evaluation="lattice"), AABB)
    lattice.load_state_dict(exact.state_dict())
    nodes = torch.linspace(-1, 1, 9)
    x = torch.stack(torch.meshgrid(nodes, nodes, nodes, indexing="ij"), -1).view(-1, 3) * 0.999999
    with torch.no_grad():
        torch.testing.assert_close(lattice.feature_volume(x), exact.feature_volume(x), rtol=1e-4, atol=1e-5)


def test_strivec_places_tensors_around_the_geometry():
    field = fields.build("strivec", AABB, {**SMALL["strivec"], "scales": (8, 16), "rank_init": 1.0})
    assert field.n_tensors() == [9**3, 0]  # the coarse stage: the full coarsest lattice, nothing finer
    grid = OccupancyGrid(AABB, 32)
    occupied = torch.zeros(32, 32, 32, dtype=torch.bool)
    occupied[12:20, 12:20, 12:20] = True  # a cube in the middle, a quarter of the box per side
    grid.bitfield = _pack(occupied)
    old_index = field.lattice_index_0.clone()
    old_vectors = [v.detach().clone() for v in (field.density_vectors[0], field.app_vectors[0])]
    assert not field.update_schedule(0.05, grid) and field.update_schedule(0.2, grid)
    coarse, fine = field.n_tensors()
    assert coarse == 3**3 and fine == 5**3  # the corners of the 2^3 and 4^3 lattice cells holding the cube
    # every kept coarse tensor is the trained one of its lattice point, value for value
    new_index = field.lattice_index_0
    kept = new_index >= 0
    assert int(kept.sum()) == coarse and bool((old_index[kept] >= 0).all())
    for before, after in zip(old_vectors, (field.density_vectors[0], field.app_vectors[0])):
        assert torch.equal(after.detach()[:, new_index[kept]], before[:, old_index[kept]])
    far = torch.tensor([[-0.95, -0.95, -0.95], [0.9, -0.9, 0.9]])
    with torch.no_grad():
        assert float(field.density(far).max()) < 1e-6  # no tensor covers the empty corners any more
    assert not field.update_schedule(0.5, grid)  # placement happens once
