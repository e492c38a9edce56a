"""Proposal-sampler ops (dense rows): pdf_resample and interval_weights, native vs reference."""

import pytest
import torch

from onefield.cuda_ext import ops, reference

pytestmark = pytest.mark.usefixtures("require_native")

DTYPES = [torch.float32, torch.float64]


def exact(a, b):
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=0, atol=0, equal_nan=False)


def sorted_edges(n: int, k: int, g: torch.Generator, dtype, repeats: bool = True) -> torch.Tensor:
    """Non-decreasing edges [n, k + 1] starting near 2, with some repeated (zero-width) intervals."""
    steps = torch.rand(n, k, generator=g, dtype=dtype) * 0.1 + 0.001
    if repeats:
        steps[torch.rand(n, k, generator=g) < 0.2] = 0.0
    start = 2.0 + torch.rand(n, 1, generator=g, dtype=dtype)
    return torch.cat([start, start + torch.cumsum(steps, -1)], -1)


def histogram(n: int, k: int, g: torch.Generator, dtype) -> torch.Tensor:
    """Weights [n, k] >= 0: sparse rows (many empty bins), a few all-zero rows, spiky values."""
    w = torch.rand(n, k, generator=g, dtype=dtype) ** 4
    w[torch.rand(n, k, generator=g) < 0.4] = 0.0
    w[::7] = 0.0
    return w


def sorted_u(n: int, m: int, g: torch.Generator, dtype) -> torch.Tensor:
    u = torch.rand(n, m, generator=g, dtype=dtype).sort(-1).values
    u[::3, 0], u[::3, -1] = 0.0, 1.0  # the ends exactly
    return u


# --- pdf_resample -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 7, 64])
@pytest.mark.parametrize("padding", [0.01, 0.0])
def test_pdf_resample_matches_reference(device, dtype, k, padding):
    g = torch.Generator().manual_seed(k)
    n, m = 300, 33
    edges, weights, u = sorted_edges(n, k, g, dtype), histogram(n, k, g, dtype), sorted_u(n, m, g, dtype)
    want = reference.pdf_resample(edges, weights, u, padding)
    got = ops.pdf_resample(edges.to(device), weights.to(device), u.to(device), padding)
    assert got.dtype == dtype and got.shape == (n, m)
    exact(got, want)
    assert torch.all(got.cpu() >= edges[:, :1]) and torch.all(got.cpu() <= edges[:, -1:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_pdf_resample_u_on_cdf_values_exactly(device, dtype):
    """Dyadic weights make the cdf exact: u on its steps, on an empty bin's flat step, at 0 and 1."""
    edges = torch.arange(6, dtype=dtype)[None]  # [0, 1, ..., 5]
    weights = torch.tensor([[1.0, 1.0, 2.0, 0.0, 4.0]], dtype=dtype)  # cdf 0, 1/8, 1/4, 1/2, 1/2, 1
    u = torch.tensor([[0.0, 0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0]], dtype=dtype)
    want = torch.tensor([[0.0, 0.5, 1.0, 2.0, 2.5, 4.0, 4.5, 5.0]], dtype=dtype)  # u = 1/2 skips the empty bin
    for fn in (ops.pdf_resample, reference.pdf_resample):
        exact(fn(edges.to(device), weights.to(device), u.to(device), 0.0), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pdf_resample_uniform_weights_map_u_linearly(device, dtype):
    k, m = 16, 50
    edges = torch.linspace(1.0, 5.0, k + 1, dtype=dtype).expand(4, -1).contiguous()
    u = torch.linspace(0.0, 1.0, m, dtype=dtype).expand(4, -1).contiguous()
    weights = torch.full((4, k), 0.3, dtype=dtype)
    weights[1] = 0.0  # zero weights: padding (or the eps fallback) makes them uniform too
    for padding in (0.01, 0.0):
        got = ops.pdf_resample(edges.to(device), weights.to(device), u.to(device), padding).cpu()
        torch.testing.assert_close(got, (1.0 + 4.0 * u), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pdf_resample_concentrated_pdf_samples_inside_its_bin(device, dtype):
    g = torch.Generator().manual_seed(3)
    k, m = 12, 40
    edges = sorted_edges(5, k, g, dtype, repeats=False)
    weights = torch.zeros(5, k, dtype=dtype)
    weights[torch.arange(5), torch.tensor([0, 3, 5, 11, 6])] = torch.rand(5, generator=g, dtype=dtype) + 0.1
    bins = weights.argmax(-1, keepdim=True)
    u = torch.linspace(0.0, 1.0, m + 1, dtype=dtype)[:-1].expand(5, -1).contiguous()  # [0, 1)
    got = ops.pdf_resample(edges.to(device), weights.to(device), u.to(device), 0.0).cpu()
    lo, hi = edges.gather(1, bins), edges.gather(1, bins + 1)
    assert torch.all(got >= lo) and torch.all(got <= hi)
    # ... and they spread over the whole bin, uniformly.
    torch.testing.assert_close(got, lo + u * (hi - lo), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pdf_resample_any_order_of_u(device, dtype):
    """Sorted u is only the fast case: shuffled u gives the reference's (searchsorted) values."""
    g = torch.Generator().manual_seed(5)
    n, k, m = 100, 20, 24
    edges, weights = sorted_edges(n, k, g, dtype), histogram(n, k, g, dtype)
    u = sorted_u(n, m, g, dtype)
    u = u.gather(1, torch.argsort(torch.rand(n, m, generator=g), -1))
    exact(ops.pdf_resample(edges.to(device), weights.to(device), u.to(device), 0.0),
          reference.pdf_resample(edges, weights, u, 0.0))


def test_pdf_resample_no_gradient_and_empty(device):
    w = torch.rand(3, 4, device=device, requires_grad=True)
    e = torch.linspace(0, 1, 5, device=device).expand(3, -1).contiguous().requires_grad_()
    out = ops.pdf_resample(e, w, torch.rand(3, 6, device=device).sort(-1).values)
    assert not out.requires_grad
    assert ops.pdf_resample(e, w, torch.zeros(3, 0, device=device)).shape == (3, 0)
    empty = ops.pdf_resample(torch.zeros(0, 5, device=device), torch.zeros(0, 4, device=device),
                             torch.zeros(0, 6, device=device))
    assert empty.shape == (0, 6)


# --- interval_weights ---------------------------------------------------------------------------


def interval_batch(n: int, s: int, q: int, g: torch.Generator, dtype):
    """Source edges with repeats; query edges partly copied from the source edges (exact ties),
    partly random, some before the first and after the last source edge."""
    t_src = sorted_edges(n, s, g, dtype)
    w_src = histogram(n, s, g, dtype)
    lo, hi = t_src[:, :1] - 0.05, t_src[:, -1:] + 0.05
    t_rand = lo + (hi - lo) * torch.rand(n, q + 1, generator=g, dtype=dtype)
    t_tied = t_src.gather(1, torch.randint(0, s + 1, (n, q + 1), generator=g))
    t_query = torch.where(torch.rand(n, q + 1, generator=g) < 0.3, t_tied, t_rand).sort(-1).values
    return t_query, t_src, w_src


def run_interval_weights(fn, device, t_query, t_src, w_src, g_out):
    w = w_src.clone().to(device).requires_grad_()
    out = fn(t_query.to(device), t_src.to(device), w)
    out.backward(g_out.to(device))
    return out.detach().cpu(), w.grad.cpu()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s,q", [(1, 9), (9, 1), (48, 32), (32, 48)])
def test_interval_weights_matches_reference(device, dtype, s, q):
    g = torch.Generator().manual_seed(s * 100 + q)
    n = 200
    t_query, t_src, w_src = interval_batch(n, s, q, g, dtype)
    g_out = torch.randn(n, q, generator=g, dtype=dtype)
    out_n, grad_n = run_interval_weights(ops.interval_weights, device, t_query, t_src, w_src, g_out)
    out_r, grad_r = run_interval_weights(reference.interval_weights, "cpu", t_query, t_src, w_src, g_out)
    exact(out_n, out_r)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(grad_n, grad_r, rtol=tol, atol=tol)
    assert grad_n.abs().max() > 0.1  # gradients are not trivially zero
    assert torch.all(out_r >= -1e-6)  # an envelope of non-negative weights


@pytest.mark.parametrize("dtype", DTYPES)
def test_interval_weights_any_order_of_queries(device, dtype):
    """Unsorted query edges (not an envelope any more) still give the reference's values."""
    g = torch.Generator().manual_seed(8)
    n, s, q = 64, 16, 20
    t_query, t_src, w_src = interval_batch(n, s, q, g, dtype)
    t_query = t_query.gather(1, torch.argsort(torch.rand(n, q + 1, generator=g), -1))
    g_out = torch.randn(n, q, generator=g, dtype=dtype)
    out_n, grad_n = run_interval_weights(ops.interval_weights, device, t_query, t_src, w_src, g_out)
    out_r, grad_r = run_interval_weights(reference.interval_weights, "cpu", t_query, t_src, w_src, g_out)
    exact(out_n, out_r)
    torch.testing.assert_close(grad_n, grad_r, rtol=1e-5, atol=1e-5)


def test_interval_weights_hand_computed(device):
    t_src = torch.tensor([[0.0, 1.0, 2.0, 3.0]], device=device)
    w_src = torch.tensor([[0.2, 0.5, 0.3]], device=device, requires_grad=True)
    t_query = torch.tensor([[0.5, 1.5, 2.5]], device=device)
    out = ops.interval_weights(t_query, t_src, w_src)
    assert out.detach().cpu().tolist() == [pytest.approx([0.7, 0.8], abs=1e-7)]
    out.backward(torch.tensor([[1.0, 10.0]], device=device))
    assert w_src.grad.cpu().tolist() == [[1.0, 11.0, 10.0]]  # source 1 overlaps both queries


def test_interval_weights_gradcheck_float64_native():
    assert ops.backend_for("cpu") == "cpp"
    g = torch.Generator().manual_seed(11)
    t_query, t_src, w_src = interval_batch(4, 6, 5, g, torch.float64)
    w = w_src.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.interval_weights(t_query, t_src, x), (w,), eps=1e-6, atol=1e-9)


def test_interval_weights_empty(device):
    w = torch.rand(2, 3, device=device, requires_grad=True)
    out = ops.interval_weights(torch.zeros(2, 1, device=device), torch.rand(2, 4, device=device).sort(-1).values, w)
    assert out.shape == (2, 0)
    out.sum().backward()
    assert torch.all(w.grad == 0)
    assert ops.interval_weights(torch.zeros(0, 5, device=device), torch.zeros(0, 4, device=device),
                                torch.zeros(0, 3, device=device)).shape == (0, 4)


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", ["", "torch"])
def test_bad_shapes_and_dtypes_raise(device, monkeypatch, kernels):
    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    e, w, u = torch.rand(3, 5, device=device), torch.rand(3, 4, device=device), torch.rand(3, 6, device=device)
    with pytest.raises(ValueError, match="columns"):
        ops.pdf_resample(e[:, :4], w, u)
    with pytest.raises(ValueError, match="rows"):
        ops.pdf_resample(e, w, u[:2])
    with pytest.raises(ValueError, match="float64"):
        ops.pdf_resample(e.double(), w, u)
    with pytest.raises(ValueError, match="float32 or float64"):
        ops.pdf_resample(e.half(), w.half(), u.half())
    with pytest.raises(ValueError, match="2-D"):
        ops.pdf_resample(e, w, u[0])
    with pytest.raises(ValueError, match="columns"):
        ops.interval_weights(u, e, w[:, :3])
    with pytest.raises(ValueError, match="float64"):
        ops.interval_weights(u.double(), e, w)


@pytest.mark.parametrize("kernels", ["", "torch"])
def test_bad_values_rejected_in_debug_mode(device, monkeypatch, kernels):
    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    monkeypatch.setenv("ONEFIELD_DEBUG", "1")  # value checks sync the device: debug only
    e, u = torch.linspace(0, 1, 5, device=device)[None], torch.rand(1, 6, device=device)
    with pytest.raises(ValueError, match=">= 0"):
        ops.pdf_resample(e, torch.tensor([[0.1, -0.1, 0.2, 0.3]], device=device), u)
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.interval_weights(u, e.flip(-1), torch.rand(1, 4, device=device))
