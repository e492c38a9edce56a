"""The splat kernels against their torch twins (values and gradients), float64 gradcheck, and gsplat's
own pure-torch projection as an outside oracle."""

import math

import pytest
import torch

from onefield.cuda_ext import splat, splat_reference as reference
from onefield.cuda_ext.splat_reference import SplatCamera

pytestmark = pytest.mark.usefixtures("require_native")

W, H = 40, 30  # not multiples of the 16-pixel tile: edge tiles are partial
CAM = SplatCamera(w2c=(1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, -0.05, 0.0, 0.0, 1.0, 0.2),
                  fx=36.0, fy=38.0, cx=19.5, cy=15.5, width=W, height=H)
KINDS = ["plain", "overlapping", "behind", "offscreen", "huge", "tiny", "saturated"]


def gaussians(kind: str, n: int = 300, seed: int = 0, dtype=torch.float32):
    """means, quats, scales, opacities of a scene in front of CAM; `kind` adds the hard cases."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g, dtype=dtype) * 4 + 2
    xy = (torch.rand(n, 2, generator=g, dtype=dtype) * 2 - 1) * z[:, None] * 0.6
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 3.5)
    opacities = torch.sigmoid(torch.randn(n, generator=g, dtype=dtype) * 2)
    third = n // 3
    if kind == "overlapping":  # all near the image centre: long per-tile lists, early termination
        means[:, :2] *= 0.1
    elif kind == "behind":
        means[:third, 2] = -means[:third, 2]  # behind the camera
        means[third:2 * third, 2] = 0.1  # between the camera and the near plane... or just past it
    elif kind == "offscreen":
        means[:third, 0] += 40.0  # far outside the view (the clamp of x/z matters for the rest)
        means[third:2 * third, 0] = means[third:2 * third, 2] * 1.2  # just outside, reaching in
    elif kind == "huge":
        scales[:third] *= 60.0
    elif kind == "tiny":
        scales[:third] *= 1e-3
    elif kind == "saturated":  # opaque, overlapping: the 0.99 clamp and the stop at T = 1e-4
        opacities[:] = 0.999
        scales *= 3.0
    return means, quats, scales, opacities


def _grad_run(fn, inputs, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outs = fn(*leaves)
    diff = [o for o in outs if o.is_floating_point()]
    torch.autograd.backward(diff, upstream)
    return [o.detach() for o in outs], [torch.zeros_like(x) if x.grad is None else x.grad for x in leaves]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("antialiased", [False, True])
def test_project_matches_reference(kind, antialiased):
    cam = SplatCamera(**{**CAM.__dict__, "antialiased": antialiased})
    inputs = gaussians(kind)
    g = torch.Generator().manual_seed(1)
    n = inputs[0].shape[0]
    upstream = [torch.randn(n, 2, generator=g), torch.randn(n, generator=g), torch.randn(n, 3, generator=g),
                torch.randn(n, generator=g)]
    out_n, grad_n = _grad_run(lambda *x: splat.project(*x, cam), inputs, upstream)
    out_r, grad_r = _grad_run(lambda *x: reference.project(*x, cam), inputs, upstream)
    assert torch.equal(out_n[0], out_r[0])  # radii: the same Gaussians culled, the same boxes
    visible = (out_r[0] > 0).all(1)
    assert 0 < int(visible.sum()) < n or kind in ("plain", "overlapping", "tiny", "huge", "saturated")
    for a, b in zip(out_n[1:], out_r[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(grad_n, grad_r):  # float32 rounding, relative to the largest gradient of the kind
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))
    assert grad_n[0][visible].abs().max() > 1e-3 and grad_n[1][visible].abs().max() > 1e-3
    assert (grad_n[0][~visible] == 0).all()  # culled Gaussians get no gradient


def test_project_culls():
    means, quats, scales, opacities = gaussians("behind")
    radii = splat.project(means, quats, scales, opacities, CAM)[0]
    third = means.shape[0] // 3
    assert (radii[:third] == 0).all()  # behind the camera
    opacities = opacities.clone()
    opacities[third:] = 0.5 / 255  # below the alpha threshold: never drawn
    assert (splat.project(means, quats, scales, opacities, CAM)[0][third:] == 0).all()


def test_opacity_aware_radius():
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    scales = torch.full((2, 3), 0.2)
    cam = SplatCamera(**{**CAM.__dict__, "w2c": (1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0)})  # mean on the axis
    radii = splat.project(means, quats, scales, torch.tensor([0.99, 0.02]), cam)[0]
    sd = math.sqrt((36.0 * 0.2 / 3.0) ** 2 + 0.3)  # the 2-d standard deviation in x, in pixels
    for row, opacity in enumerate((0.99, 0.02)):  # the box ends where opacity * exp(-r^2 / 2) = 1/255
        assert int(radii[row, 0]) == math.ceil(min(3.33, math.sqrt(2 * math.log(opacity * 255))) * sd)
    assert int(radii[1, 0]) < int(radii[0, 0]) - 2


@pytest.mark.parametrize("kind", KINDS)
def test_bin_tiles_matches_reference(kind):
    radii, means2d, depths, _, _ = splat.project(*gaussians(kind), CAM)
    off_n, ids_n = splat.bin_tiles(means2d, radii, depths, W, H)
    off_r, ids_r = reference.bin_tiles(means2d, radii, depths, W, H)
    assert torch.equal(off_n, off_r) and torch.equal(ids_n, ids_r)
    assert len(off_n) == 3 * 2 + 1 and int(off_n[-1]) == len(ids_n) > 0
    for t in range(6):  # every list front to back
        d = depths[ids_n[off_n[t]:off_n[t + 1]]]
        assert (d[1:] >= d[:-1]).all()


def _raster_inputs(kind: str, channels: int = 4, seed: int = 0, dtype=torch.float32):
    means, quats, scales, opacities = gaussians(kind, seed=seed, dtype=dtype)
    radii, means2d, depths, conics, opac = (t.detach() for t in splat.project(means, quats, scales, opacities, CAM))
    off, ids = splat.bin_tiles(means2d, radii, depths, W, H)
    g = torch.Generator().manual_seed(seed + 5)
    colors = torch.rand(means.shape[0], channels, generator=g, dtype=dtype)
    background = torch.rand(channels, generator=g, dtype=dtype)
    return (means2d, conics, colors, opac), radii, background, off, ids


@pytest.mark.parametrize("kind", KINDS)
def test_rasterize_matches_reference(kind):
    inputs, radii, background, off, ids = _raster_inputs(kind)
    g = torch.Generator().manual_seed(2)
    upstream = [torch.randn(H, W, 4, generator=g), torch.randn(H, W, generator=g)]

    def run(fn, m2, con, col, op):
        return fn(m2, radii, con, col, op, background, off, ids, W, H)

    out_n, grad_n = _grad_run(lambda *x: run(splat.rasterize, *x), inputs, upstream)
    out_r, grad_r = _grad_run(lambda *x: run(reference.rasterize, *x), inputs, upstream)
    for a, b in zip(out_n, out_r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(grad_n, grad_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
    assert grad_n[0].abs().max() > 1e-3 and grad_n[3].abs().max() > 1e-3
    alpha = out_n[1]
    if kind == "saturated":  # opaque pixels: the stop at T = 1e-4 fired and alpha is near 1
        assert float(alpha.max()) > 0.999
    assert 0.0 <= float(alpha.min()) and float(alpha.max()) < 1.0


def test_rasterize_empty_tiles_show_background():
    (m2, con, col, op), radii, background, off, ids = _raster_inputs("plain")
    empty = torch.zeros_like(off)  # no Gaussian in any tile
    image, alpha = splat.rasterize(m2, radii, con, col, op, background, empty, ids[:0], W, H)
    assert torch.equal(image, background.expand(H, W, 4)) and (alpha == 0).all()


def test_pipeline_gradients_match_reference():
    """Image loss -> means, quats, scales, opacities, colours through every op, native vs twin."""
    leaves = gaussians("overlapping", n=200)
    colors = torch.rand(200, 3)
    background = torch.tensor([1.0, 1.0, 1.0])
    target = torch.rand(H, W, 3)
    grads = []
    for proj, bins, rast in ((splat.project, splat.bin_tiles, splat.rasterize),
                             (reference.project, reference.bin_tiles, reference.rasterize)):
        ls = [t.clone().requires_grad_() for t in (*leaves, colors)]
        radii, means2d, depths, conics, opac = proj(*ls[:4], CAM)
        off, ids = bins(means2d.detach(), radii, depths.detach(), W, H)
        image, _ = rast(means2d, radii, conics, ls[4], opac, background, off, ids, W, H)
        ((image - target) ** 2).mean().backward()
        grads.append([t.grad for t in ls])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert a.abs().max() > 0


def test_gradcheck_project_float64():
    means, quats, scales, opacities = gaussians("plain", n=6, seed=3, dtype=torch.float64)
    cam = SplatCamera(**{**CAM.__dict__, "antialiased": True})
    assert (splat.project(means, quats, scales, opacities, cam)[0] > 0).all()

    def fn(*x):
        return [o for o in splat.project(*x, cam) if o.is_floating_point()]

    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opacities)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_rasterize_float64():
    inputs, _, background, off, ids = _raster_inputs("plain", channels=2, seed=4, dtype=torch.float64)
    keep = torch.unique(ids)[:8]  # a handful of Gaussians, re-binned with boxes covering the image
    m2, con, col, op = (t[keep] for t in inputs)
    radii = torch.full((len(keep), 2), 40, dtype=torch.int32)
    off, ids = splat.bin_tiles(m2, radii, torch.arange(len(keep), dtype=torch.float64), W, H)
    leaves = [t.clone().requires_grad_() for t in (m2, con, col, op)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: splat.rasterize(a, radii, b, c, d, background, off, ids, W, H),
                                    leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colors_match_reference(degree):
    g = torch.Generator().manual_seed(degree)
    means, campos = torch.randn(400, 3, generator=g), torch.randn(3, generator=g)
    coeffs = torch.randn(400, 16, 3, generator=g)  # some colours below 0: the clamp acts
    upstream = [torch.randn(400, 3, generator=g)]
    out_n, grad_n = _grad_run(lambda m, c: [splat.sh_colors(m, c, campos, degree)], (means, coeffs), upstream)
    out_r, grad_r = _grad_run(lambda m, c: [reference.sh_colors(m, c, campos, degree)], (means, coeffs), upstream)
    torch.testing.assert_close(out_n[0], out_r[0], rtol=1e-5, atol=1e-6)
    assert (out_r[0] == 0).any() and (out_r[0] > 0).any()
    for a, b in zip(grad_n, grad_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert (grad_n[1][:, (degree + 1) ** 2:] == 0).all()  # unused bands get nothing
    assert (grad_n[0].abs().max() > 1e-3) == (degree > 0)  # the direction matters from degree 1 on


def test_gradcheck_sh_float64():
    g = torch.Generator().manual_seed(7)
    means = torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_()
    coeffs = (torch.randn(5, 16, 3, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    campos = torch.randn(3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, c: splat.sh_colors(m, c, campos, 3), (means, coeffs), eps=1e-6, atol=1e-7)


def _volume_gaussians(n: int, seed: int, dtype=torch.float32):
    """Boxes over three orders of magnitude (several lattice levels), one far outside the rest."""
    from onefield.fields.box_lattice import BoxLattice  # the structure the field builds for its queries

    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1
    means[0] = torch.tensor([9.0, 0.0, 0.0], dtype=dtype)
    rot = reference.rotation(torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=dtype), dim=-1))
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * math.log(1000) + math.log(1e-3))
    whiten = (rot / scales[:, None, :]).contiguous()
    half = 3 * ((rot * rot) * (scales * scales)[:, None, :]).sum(-1).sqrt()
    peak = torch.rand(n, generator=g, dtype=dtype) * 5
    sh = torch.randn(n, 16, 3, generator=g, dtype=dtype) * 1.5  # colours below 0 and above 1: the clamps act
    return BoxLattice(means - half, means + half), means, whiten, peak, sh


@pytest.mark.parametrize("degree", [0, 3])
def test_query_matches_reference(degree):
    """Density and colour at points: the kernel against the twin (whose small pair chunks split the
    points), with points in no box, on a box face and in many."""
    lattice, means, whiten, peak, sh = _volume_gaussians(400, seed=degree)
    g = torch.Generator().manual_seed(10 + degree)
    x = torch.cat([torch.rand(3000, 3, generator=g) * 2.4 - 1.2, lattice.hi[:50], lattice.lo[50:100]])
    d = torch.randn(x.shape[0], 3, generator=g) * 3  # not unit: both normalise
    sigma_r, rgb_r = reference.query(x, d, lattice, means, whiten, peak, sh, degree, max_pairs=5000)
    sigma_n, rgb_n = splat.query(x, d, lattice, means, whiten, peak, sh, degree)
    assert (sigma_r == 0).any() and int((sigma_r > 0).sum()) > 1000
    torch.testing.assert_close(sigma_n, sigma_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rgb_n, rgb_r, rtol=1e-5, atol=1e-5)
    hit = rgb_r[sigma_r > 0]
    assert ((hit > 0) & (hit < 1)).any() and (hit == 0).any() and (hit == 1).any()  # both clamps act
    density_only, none = splat.query(x, None, lattice, means, whiten, peak, sh, degree)
    assert none is None
    torch.testing.assert_close(density_only, sigma_n, rtol=0, atol=0)


def test_query_float64_and_gradients_through_the_twin():
    lattice, means, whiten, peak, sh = _volume_gaussians(60, seed=2, dtype=torch.float64)
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    d = torch.ones_like(x)
    with torch.no_grad():
        native = splat.query(x, d, lattice, means, whiten, peak, sh, 3)
    twin = reference.query(x, d, lattice, means, whiten, peak, sh, 3)
    for a, b in zip(native, twin):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    peak = peak.clone().requires_grad_()  # a gradient wanted: the twin answers, differentiably
    sigma, _ = splat.query(x, d, lattice, means, whiten, peak, sh, 3)
    sigma.sum().backward()
    assert peak.grad.abs().sum() > 0


def test_projection_against_gsplat():
    """gsplat's pure-torch fused projection (its CUDA kernels' twin) agrees on the 2-d means, conics,
    depths and compensations of every Gaussian both keep; its radius is the full 3.33 sigma (not
    opacity-aware, unlike its CUDA kernel and ours), so ours is never larger."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, opacities = gaussians("offscreen")
    cam = SplatCamera(**{**CAM.__dict__, "antialiased": True})
    radii, means2d, depths, conics, opac = splat.project(means, quats, scales, opacities, cam)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    viewmat = torch.eye(4)
    viewmat[:3] = torch.tensor(cam.w2c).view(3, 4)
    K = torch.tensor([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1.0]])
    g_radii, g_means2d, g_depths, g_conics, g_comp = _fully_fused_projection(
        means, covars, viewmat[None], K[None], W, H, eps2d=0.3, calc_compensations=True)
    both = (radii > 0).all(1) & (g_radii[0] > 0).all(1)
    assert int(both.sum()) > 50 and bool(both[200:].any())  # some of the ones just outside, reaching in
    torch.testing.assert_close(means2d[both], g_means2d[0][both], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(depths[both], g_depths[0][both])
    torch.testing.assert_close(conics[both], g_conics[0][both], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(opac[both], (opacities * g_comp[0])[both], rtol=1e-5, atol=1e-6)
    assert (radii[both] <= g_radii[0][both]).all()  # ours end where the Gaussian fades below 1/255
    assert (radii[both] < g_radii[0][both]).any()
