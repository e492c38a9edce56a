import nerfacc
import pytest
import torch

from onefield.cuda_ext import ops, reference

pytestmark = pytest.mark.usefixtures("require_native")


def packed_batch(n_rays: int, max_count: int, seed: int = 0, dtype=torch.float32):
    """Random packed samples with variable counts (including empty rays)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_count + 1, (n_rays,), generator=g)
    counts[0] = 0
    starts = torch.cumsum(counts, 0) - counts
    s = int(counts.sum())
    dt = torch.rand(s, generator=g, dtype=dtype) * 0.05 + 0.001
    t_starts = torch.cat([torch.cumsum(dt[a:a + c], 0) - dt[a:a + c] + 1.0 for a, c in zip(starts.tolist(), counts.tolist())])
    t_ends = t_starts + dt
    sigmas = torch.rand(s, generator=g, dtype=dtype) * 40.0
    rgbs = torch.rand(s, 3, generator=g, dtype=dtype)
    return sigmas, rgbs, t_starts, t_ends, torch.stack([starts, counts], -1)


def run_both(device, sigmas, rgbs, t0, t1, info, t_thresh, grads):
    outs = []
    for fn, dev in ((ops.volume_render, device), (reference.volume_render, "cpu")):
        s = sigmas.clone().to(dev).requires_grad_()
        c = rgbs.clone().to(dev).requires_grad_()
        out = fn(s, c, t0.to(dev), t1.to(dev), info.to(dev), t_thresh)
        torch.autograd.backward(out, [g.to(dev) for g in grads])
        outs.append(([o.detach().cpu() for o in out], s.grad.cpu(), c.grad.cpu()))
    return outs


@pytest.mark.parametrize("t_thresh", [0.0, 1e-4, 0.05])
def test_matches_reference(device, t_thresh):
    sigmas, rgbs, t0, t1, info = packed_batch(500, 64)
    g = torch.Generator().manual_seed(9)
    grads = [torch.randn(sigmas.shape[0], generator=g), torch.randn(500, 3, generator=g),
             torch.randn(500, generator=g), torch.randn(500, generator=g)]
    (out_n, gs_n, gc_n), (out_r, gs_r, gc_r) = run_both(device, sigmas, rgbs, t0, t1, info, t_thresh, grads)
    for a, b in zip(out_n, out_r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gs_n, gs_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc_n, gc_r, rtol=1e-5, atol=1e-5)
    assert gs_n.abs().max() > 1e-3  # gradients are not trivially zero
    if t_thresh == 0.05:
        assert (out_r[0] == 0).sum() > (sigmas.shape[0] // 10)  # early termination really cut samples


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_gradcheck_float64(impl):
    sigmas, rgbs, t0, t1, info = packed_batch(5, 6, seed=2, dtype=torch.float64)
    fn = ops.volume_render if impl == "native" else reference.volume_render
    s = (sigmas * 0.1).requires_grad_()
    c = rgbs.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, t0, t1, info, 0.0), (s, c), eps=1e-6, atol=1e-7)


def test_matches_nerfacc_dense_functions(device):
    """nerfacc's batched (dense) renderer on CPU as an outside oracle, values and gradients."""
    g = torch.Generator().manual_seed(4)
    n_rays, n_samples = 64, 48
    edges = torch.cumsum(torch.rand(n_rays, n_samples + 1, generator=g) * 0.04 + 0.002, -1)
    t_starts, t_ends = edges[:, :-1].contiguous(), edges[:, 1:].contiguous()
    sigmas = torch.rand(n_rays, n_samples, generator=g) * 30
    rgbs = torch.rand(n_rays, n_samples, 3, generator=g)

    s_ref = sigmas.clone().requires_grad_()
    w_ref, _, _ = nerfacc.render_weight_from_density(t_starts, t_ends, s_ref)
    color_ref = nerfacc.accumulate_along_rays(w_ref, rgbs)
    opacity_ref = nerfacc.accumulate_along_rays(w_ref, None)
    (color_ref.sum() + opacity_ref.sum()).backward()

    info = torch.stack([torch.arange(n_rays) * n_samples, torch.full((n_rays,), n_samples)], -1)
    s = sigmas.flatten().to(device).requires_grad_()
    w, color, _, opacity = ops.volume_render(s, rgbs.reshape(-1, 3).to(device), t_starts.flatten().to(device),
                                             t_ends.flatten().to(device), info.to(device), 0.0)
    (color.sum() + opacity.sum()).backward()
    torch.testing.assert_close(w.detach().cpu().view(n_rays, n_samples), w_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(color.detach().cpu(), color_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opacity.detach().cpu(), opacity_ref.detach().squeeze(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.grad.cpu().view(n_rays, n_samples), s_ref.grad, rtol=1e-4, atol=1e-6)


def test_zero_samples(device):
    empty = torch.zeros(0, device=device, requires_grad=True)
    rgbs = torch.zeros(0, 3, device=device, requires_grad=True)
    info = torch.zeros(3, 2, dtype=torch.long, device=device)
    w, color, depth, opacity = ops.volume_render(empty, rgbs, empty.detach(), empty.detach(), info, 1e-4)
    assert w.shape == (0,) and color.shape == (3, 3)
    assert torch.all(color == 0) and torch.all(depth == 0) and torch.all(opacity == 0)
    (color.sum() + opacity.sum()).backward()
    assert empty.grad.shape == (0,)


def test_single_sample_is_closed_form(device):
    s = torch.tensor([3.0], device=device, requires_grad=True)
    rgb = torch.tensor([[0.2, 0.4, 0.6]], device=device)
    info = torch.tensor([[0, 1]], device=device)
    w, color, depth, opacity = ops.volume_render(s, rgb, torch.tensor([1.0], device=device),
                                                 torch.tensor([1.5], device=device), info, 1e-4)
    alpha = 1 - torch.exp(torch.tensor(-1.5))
    assert opacity.item() == pytest.approx(alpha.item(), rel=1e-6)
    assert depth.item() == pytest.approx(alpha.item() * 1.25, rel=1e-6)
    assert color.cpu()[0].tolist() == pytest.approx((alpha * torch.tensor([0.2, 0.4, 0.6])).tolist(), rel=1e-6)
    opacity.sum().backward()
    assert s.grad.item() == pytest.approx(0.5 * torch.exp(torch.tensor(-1.5)).item(), rel=1e-5)  # d alpha / d sigma


def test_saturated_ray_terminates_early(device):
    s = torch.tensor([1e4, 5.0, 5.0, 5.0], device=device, requires_grad=True)
    rgb = torch.rand(4, 3, device=device, requires_grad=True)
    t0 = torch.tensor([0.0, 0.1, 0.2, 0.3], device=device)
    info = torch.tensor([[0, 4]], device=device)
    w, color, _, opacity = ops.volume_render(s, rgb, t0, t0 + 0.1, info, 1e-4)
    assert opacity.item() == pytest.approx(1.0, abs=1e-6)
    assert w.cpu()[1:].tolist() == [0.0, 0.0, 0.0]  # never evaluated past the opaque sample
    torch.testing.assert_close(color.detach()[0], rgb.detach()[0])
    color.sum().backward()
    assert torch.all(s.grad[1:] == 0) and torch.all(rgb.grad[1:] == 0)


@pytest.mark.parametrize("kernels", ["", "torch"])
def test_rejects_a_layout_that_is_not_packed_in_debug_mode(device, monkeypatch, kernels):
    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    monkeypatch.setenv("ONEFIELD_DEBUG", "1")  # the layout is a value check: it syncs, so debug only
    s = torch.rand(6, device=device)
    rgb = torch.rand(6, 3, device=device)
    t0 = torch.arange(6.0, device=device) * 0.1
    for info in ([[0, 2], [3, 3]], [[0, 2], [2, 3]]):  # a gap; samples left over
        with pytest.raises(ValueError, match="packed layout"):
            ops.volume_render(s, rgb, t0, t0 + 0.1, torch.tensor(info, device=device), 1e-4)
