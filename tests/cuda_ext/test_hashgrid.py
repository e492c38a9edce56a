import pytest
import torch

from onefield.cuda_ext import HashGridConfig, HashGridEncoding, choose_implementation, ops, reference
from onefield.cuda_ext.encoding import tcnn_installed

pytestmark = pytest.mark.usefixtures("require_native")


def setup_grid(n_levels=8, log2_t=12, n_feat=2, base=4, b=1.6, n=3000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    scales, res = ops.hash_grid_levels(n_levels, base, b)
    table = (torch.rand(n_levels, 2**log2_t, n_feat, generator=g, dtype=dtype) * 2 - 1)
    x = torch.rand(n, 3, generator=g, dtype=dtype)
    return x, table, scales, res


def test_levels_mix_dense_and_hashed():
    _, table, scales, res = setup_grid()
    dense = [r**3 <= table.shape[1] for r in res]
    assert dense[0] and not dense[-1]
    assert scales[0] == 3.0 and res[0] == 4


def test_matches_reference_values_and_gradients(device):
    x, table, scales, res = setup_grid()
    g_out = torch.randn(x.shape[0], table.shape[0] * table.shape[2], generator=torch.Generator().manual_seed(1))
    results = []
    for fn, dev in ((ops.hash_encode, device), (reference.hash_encode, "cpu")):
        xi, ti = x.clone().to(dev).requires_grad_(), table.clone().to(dev).requires_grad_()
        out = fn(xi, ti, scales, res)
        out.backward(g_out.to(dev))
        results.append((out.detach().cpu(), xi.grad.cpu(), ti.grad.cpu()))
    (o_n, gx_n, gt_n), (o_r, gx_r, gt_r) = results
    torch.testing.assert_close(o_n, o_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gt_n, gt_r, rtol=1e-5, atol=1e-5)
    # d/dx carries the level scale (up to ~70 here): compare relative to the gradient's size.
    torch.testing.assert_close(gx_n, gx_r, rtol=1e-5, atol=1e-5 * float(gx_r.abs().max()))


def test_two_feature_kernels_equal_the_general_ones_bit_for_bit():
    """The CPU's 2-feature forward and table gradient (their own loops) give the general kernels' bits:
    a 4-feature table whose first two features are the 2-feature table's encodes them, and gets
    their gradients, identically (3000 points: several blocks and a partial batch; dense and hashed
    levels)."""
    x, table, scales, res = setup_grid()
    wide = torch.cat([table, torch.rand_like(table)], -1).requires_grad_()  # [L, T, 4]
    table.requires_grad_()
    two = ops.hash_encode(x, table, scales, res).view(x.shape[0], -1, 2)
    four = ops.hash_encode(x, wide, scales, res).view(x.shape[0], -1, 4)
    assert torch.equal(two, four[..., :2])
    g = torch.randn(two.shape, generator=torch.Generator().manual_seed(2))
    two.backward(g)
    four.backward(torch.cat([g, torch.randn_like(g)], -1))
    assert torch.equal(table.grad, wide.grad[..., :2])


def test_table_gradient_only(device):
    """Training never asks for d/dx; the kernel must not need x to require grad."""
    x, table, scales, res = setup_grid(n=500)
    t = table.clone().to(device).requires_grad_()
    ops.hash_encode(x.to(device), t, scales, res).sum().backward()
    t_ref = table.clone().requires_grad_()
    reference.hash_encode(x, t_ref, scales, res).sum().backward()
    torch.testing.assert_close(t.grad.cpu(), t_ref.grad, rtol=1e-5, atol=1e-5)
    assert t.grad.abs().sum() > 0


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_gradcheck_float64(impl):
    x, table, scales, res = setup_grid(n_levels=3, log2_t=5, n=6, base=2, b=2.0, dtype=torch.float64)
    assert any(r**3 > 32 for r in res) and any(r**3 <= 32 for r in res)
    fn = ops.hash_encode if impl == "native" else reference.hash_encode
    xs = (x * 0.8 + 0.1).requires_grad_()
    ts = table.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, scales, res), (xs, ts), eps=1e-7, atol=1e-5)


def test_dense_level_is_trilinear_interpolation(device):
    """A dense level equals grid_sample over the table laid out as a res^3 grid."""
    scale = 7.0
    res = 9
    g = torch.Generator().manual_seed(3)
    table = torch.rand(1, 1024, 3, generator=g)
    x = torch.rand(2000, 3, generator=g)
    out = ops.hash_encode(x.to(device), table.to(device), (scale,), (res,)).cpu()
    volume = table[0, : res**3].view(res, res, res, 3).permute(3, 0, 1, 2)[None]  # [1, F, z, y, x]
    p = x * scale + 0.5  # grid coordinates of the points
    coords = (p / (res - 1) * 2 - 1).view(1, -1, 1, 1, 3)
    want = torch.nn.functional.grid_sample(volume, coords, align_corners=True, padding_mode="border")
    torch.testing.assert_close(out, want.view(3, -1).T, rtol=1e-5, atol=1e-6)


def test_hashed_level_uses_the_instant_ngp_hash(device):
    """At a grid vertex the encoding is exactly the table row given by the spatial hash."""
    t_size, scale = 2**10, 64.0  # a power-of-two scale puts x * scale + 0.5 exactly on the vertex
    table = torch.arange(t_size, dtype=torch.float32)[None, :, None].repeat(1, 1, 2)
    for corner in [(1, 2, 3), (40, 7, 63), (0, 0, 0)]:
        x = ((torch.tensor(corner, dtype=torch.float32) - 0.5) / scale)[None]
        h = (corner[0] * 1) ^ (corner[1] * 2654435761) ^ (corner[2] * 805459861)
        row = (h & 0xFFFFFFFF) % t_size
        out = ops.hash_encode(x.to(device), table.to(device), (scale,), (65,))
        assert out.cpu()[0].tolist() == [float(row), float(row)]


def test_encoding_module_runs_our_kernels(device):
    config = HashGridConfig(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=64)
    assert choose_implementation(device) == ("tcnn" if device == "cuda" and tcnn_installed() else "onefield")
    enc = HashGridEncoding(config, device=device, implementation="onefield")
    assert enc.out_dim == 8 and enc.resolutions[0] == 4 and enc.resolutions[-1] == 64
    x = torch.rand(100, 3, device=device)
    out = enc(x)
    torch.testing.assert_close(out, ops.hash_encode(x, enc.table, enc.scales, enc.resolutions))
    out.square().sum().backward()
    assert enc.table.grad is not None and enc.table.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        enc(x[:, :2])


@pytest.mark.parametrize("kernels", ["native", "torch"])
def test_coarse_levels_only_encode_and_train_the_first_levels(device, kernels, monkeypatch):
    """`levels=k`: the first k levels' features exactly as with all levels, zeros after them, and no
    gradient into the finer levels' tables (coarse-to-fine training), in our kernels and their twin."""
    if kernels == "torch":
        monkeypatch.setenv("ONEFIELD_KERNELS", "torch")
    config = HashGridConfig(n_levels=6, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=128)
    enc = HashGridEncoding(config, device=device, implementation="onefield", init_scale=1.0)
    x = torch.rand(300, 3, device=device)
    full = enc(x)
    coarse = enc(x, levels=2)
    assert coarse.shape == full.shape == (300, 12)
    torch.testing.assert_close(coarse[:, :4], full[:, :4], rtol=0, atol=0)
    assert torch.all(coarse[:, 4:] == 0)
    coarse.square().sum().backward()
    grad = enc.table.grad
    assert grad[:2].abs().sum() > 0 and torch.all(grad[2:] == 0)
    torch.testing.assert_close(enc(x, levels=6), full)
    for bad in (0, 7):
        with pytest.raises(ValueError, match=r"levels must be in \[1, 6\]"):
            enc(x, levels=bad)


def test_tcnn_is_chosen_only_where_it_can_run(monkeypatch):
    assert choose_implementation("cpu") == "onefield"
    assert choose_implementation("cpu", "onefield") == "onefield"
    with pytest.raises(ValueError, match="tinycudann"):
        choose_implementation("cpu", "tcnn")
    with pytest.raises(ValueError, match="one of"):
        choose_implementation("cpu", "fastest")
    monkeypatch.setattr("onefield.cuda_ext.encoding.tcnn_installed", lambda: True)
    assert choose_implementation("cuda") == "tcnn"
    monkeypatch.setenv("ONEFIELD_KERNELS", "torch")
    assert choose_implementation("cuda") == "onefield"  # forcing the reference wins


def test_no_points(device):
    _, table, scales, res = setup_grid(n_levels=3)
    t = table.to(device).requires_grad_()
    out = ops.hash_encode(torch.zeros(0, 3, device=device), t, scales, res)
    assert out.shape == (0, 6)
    out.sum().backward()
    assert torch.all(t.grad == 0)
