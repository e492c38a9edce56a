import pytest
import torch

from onefield.cuda_ext import ops, reference

pytestmark = pytest.mark.usefixtures("require_native")


@pytest.mark.parametrize("n", [8, 13, 4096 + 5])
def test_pack_bits_matches_reference_and_definition(device, n):
    occs = torch.rand(n, generator=torch.Generator().manual_seed(n))
    got = ops.grid_pack_bits(occs.to(device), 0.4).cpu()
    assert torch.equal(got, reference.grid_pack_bits(occs, 0.4))
    assert got.numel() == (n + 7) // 8
    for i in range(n):
        assert bool((int(got[i // 8]) >> (i % 8)) & 1) == bool(occs[i] > 0.4)
    assert int(got[-1]) >> (n - 8 * (got.numel() - 1)) == 0  # padding bits are clear


def test_ema_update_takes_max_of_duplicates_and_decays_every_cell(device):
    occs = torch.tensor([1.0, 0.5, 0.3], device=device)
    idx = torch.tensor([0, 0, 1], device=device)
    vals = torch.tensor([0.2, 2.0, 0.1], device=device)
    ops.grid_ema_update_(occs, idx, vals, 0.5)
    assert occs.cpu().tolist() == pytest.approx([2.0, 0.25, 0.15], abs=1e-7)


def test_ema_update_matches_reference(device):
    g = torch.Generator().manual_seed(1)
    occs = torch.rand(32**3, generator=g)
    idx = torch.randint(0, 32**3, (50000,), generator=g)
    vals = torch.rand(50000, generator=g) * 3
    got = occs.clone().to(device)
    ops.grid_ema_update_(got, idx.to(device), vals.to(device), 0.95)
    want = occs.clone()
    reference.grid_ema_update_(want, idx, vals, 0.95)
    assert torch.equal(got.cpu(), want)
