import pytest
import torch

from onefield.cuda_ext import ops, reference

pytestmark = pytest.mark.usefixtures("require_native")

UNIT_BOX = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])


def random_rays(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=dtype) * 2.0
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)
    d[:50, 0] = 0.0  # rays parallel to a slab
    return o, d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_exactly(device, dtype):
    o, d = random_rays(5000, dtype=dtype)
    box = UNIT_BOX.to(dtype)
    got = ops.ray_aabb_intersect(o.to(device), d.to(device), box.to(device))
    want = reference.ray_aabb_intersect(o, d, box)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w)
    assert 0.05 < float(want[2].float().mean()) < 0.8  # both hits and misses were exercised


def test_known_intersections(device):
    o = torch.tensor([[0.0, 0.0, -3.0], [0.2, 0.1, 0.0], [0.0, 2.0, -3.0], [0.5, 0.5, 3.0], [0.5, 0.0, 0.0],
                      [3.0, 0.0, 0.0]], device=device)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0],
                      [0.0, 1.0, 0.0]], device=device)
    t_near, t_far, hit = ops.ray_aabb_intersect(o, d, UNIT_BOX.to(device))
    assert hit.tolist() == [True, True, False, False, True, False]
    assert t_near[0].item() == 2.0 and t_far[0].item() == 4.0
    assert t_near[1].item() == -1.0 and t_far[1].item() == 1.0  # origin inside: negative t_near
    assert t_near[2].item() == t_far[2].item() == 1e10  # parallel ray outside the y slab
    assert t_near[3].item() == 1e10  # box entirely behind the origin
    assert t_near[4].item() == -1.0 and t_far[4].item() == 1.0  # parallel in x and z, inside
