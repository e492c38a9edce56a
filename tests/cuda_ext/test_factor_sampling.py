"""Tensor-factor samplers: plane_sample (planes and lines) and trivec_sample (Strivec), native vs reference."""

import pytest
import torch

from onefield.cuda_ext import ops, reference

pytestmark = pytest.mark.usefixtures("require_native")


def points(n: int, seed: int) -> torch.Tensor:
    """uv [n, 2] in [-1, 1], with the faces, corners and texel centres included exactly."""
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 2, generator=g) * 2 - 1
    uv[:4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]])
    return uv


@pytest.mark.parametrize("shape,k", [((17, 23, 8), 8), ((17, 23, 8), 3), ((40, 1, 6), 6), ((1, 9, 4), 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_values_and_gradients(device, shape, k, dtype):
    """Planes, lines (W = 1), a single row (H = 1), a prefix of the channels (k < C), both dtypes."""
    g = torch.Generator().manual_seed(0)
    plane = torch.randn(*shape, generator=g, dtype=dtype)
    uv = points(3000, 1).to(dtype)
    g_out = torch.randn(3000, k, generator=g, dtype=dtype)
    results = []
    for fn, dev in ((ops.plane_sample, device), (reference.plane_sample, "cpu")):
        p = plane.clone().to(dev).requires_grad_()
        out = fn(p, uv.to(dev), k)
        out.backward(g_out.to(dev))
        results.append((out.detach().cpu(), p.grad.cpu()))
    (o_n, g_n), (o_r, g_r) = results
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(o_n, o_r, rtol=tol, atol=tol)
    torch.testing.assert_close(g_n, g_r, rtol=tol, atol=tol * 10)
    assert float(g_n[..., k:].abs().sum()) == 0.0  # channels beyond k get no gradient


def test_texel_values_are_reproduced_at_their_positions(device):
    plane = torch.arange(5 * 4 * 2, dtype=torch.float32).view(5, 4, 2).to(device)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 4), indexing="ij")
    uv = torch.stack([xs, ys], -1).view(-1, 2).to(device)
    torch.testing.assert_close(ops.plane_sample(plane, uv), plane.view(-1, 2))


def test_uv_gradient_falls_back_to_the_reference():
    plane = torch.randn(8, 8, 3)
    uv = (torch.rand(50, 2) * 2 - 1).requires_grad_()
    ops.plane_sample(plane, uv).sum().backward()
    assert uv.grad is not None and float(uv.grad.abs().sum()) > 0


def test_bad_arguments_are_named():
    from onefield.cuda_ext import native

    with pytest.raises(RuntimeError, match="uv must be \\[N, 2\\]"):
        native.plane_sample_forward(torch.zeros(4, 4, 2), torch.zeros(5, 3), 2)
    with pytest.raises(RuntimeError, match="k must be in \\[1, C\\]"):
        native.plane_sample_forward(torch.zeros(4, 4, 2), torch.zeros(5, 2), 3)


def trivec_inputs(n=700, slots=8, tensors=13, length=7, channels=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(3, tensors, length, channels, generator=g, dtype=dtype)
    ids = torch.randint(-1, tensors, (n, slots), generator=g)
    local = (torch.rand(n, slots, 3, generator=g, dtype=dtype) * 2 - 1)
    local[0, 0] = torch.tensor([-1.0, 1.0, 0.0], dtype=dtype)  # the cube's faces and centre exactly
    weights = torch.rand(n, slots, generator=g, dtype=dtype)
    return vectors, ids, local, weights


@pytest.mark.parametrize("k", [6, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trivec_matches_reference_values_and_gradients(device, k, dtype):
    vectors, ids, local, weights = trivec_inputs(dtype=dtype)
    g_out = torch.randn(ids.shape[0], k, generator=torch.Generator().manual_seed(1), dtype=dtype)
    results = []
    for fn, dev in ((ops.trivec_sample, device), (reference.trivec_sample, "cpu")):
        v = vectors.clone().to(dev).requires_grad_()
        out = fn(v, ids.to(dev), local.to(dev), weights.to(dev), k)
        out.backward(g_out.to(dev))
        results.append((out.detach().cpu(), v.grad.cpu()))
    (o_n, g_n), (o_r, g_r) = results
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(o_n, o_r, rtol=tol, atol=tol)
    torch.testing.assert_close(g_n, g_r, rtol=tol, atol=tol * 10)
    assert float(g_n[..., k:].abs().sum()) == 0.0


def test_trivec_is_a_weighted_sum_of_cp_products(device):
    """One slot at a texel position: the product of the three vectors' texel values, times the weight."""
    vectors, _, _, _ = trivec_inputs(tensors=2, length=3, channels=4)
    ids = torch.tensor([[1, -1]])
    local = torch.tensor([[[-1.0, 0.0, 1.0], [0.3, 0.3, 0.3]]])  # texels 0, 1 and 2 of tensor 1
    weights = torch.tensor([[0.5, 0.9]])
    out = ops.trivec_sample(vectors.to(device), ids.to(device), local.to(device), weights.to(device)).cpu()
    expected = 0.5 * vectors[0, 1, 0] * vectors[1, 1, 1] * vectors[2, 1, 2]
    torch.testing.assert_close(out[0], expected)


@pytest.mark.parametrize("kernels", ["", "torch"])
def test_trivec_bad_arguments_are_named(monkeypatch, kernels):
    from onefield.cuda_ext import native

    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    monkeypatch.setenv("ONEFIELD_DEBUG", "1")  # the id range is a value check: it reads ids on the host
    vectors, ids, local, weights = trivec_inputs()
    with pytest.raises(ValueError, match="ids must be < the number of tensors"):
        ops.trivec_sample(vectors, ids + 20, local, weights, 2)
    with pytest.raises(RuntimeError, match="local must be \\[N, S, 3\\]"):
        native.trivec_sample_forward(vectors, ids, local[:, :, :2].contiguous(), weights, 2)
