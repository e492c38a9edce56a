"""`BoxLattice`: every (point, box) pair with the point inside the box, none else, whatever the spread
of box sizes and however small the chunks."""

import pytest
import torch

from onefield.fields.box_lattice import BoxLattice


def boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres in [-1, 1]^3 and edges log-uniform over 4 orders of magnitude (1e-4 to 2)."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 3, generator=g) * 2 - 1
    half = torch.exp(torch.rand(n, 3, generator=g) * 9.9 - 9.9) * 1.0  # [N, 3] from 5e-5 to 1
    return centre - half, centre + half


@pytest.mark.parametrize("max_pairs", [1 << 21, 7, 1])
def test_pairs_are_exactly_the_points_inside_each_box(max_pairs):
    lo, hi = boxes(500, 0)
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(600, 3, generator=g) * 2.4 - 1.2,  # some outside every box
                   (lo[:100] + hi[:100]) / 2])  # the centres of tiny boxes: found at the finest level
    lattice = BoxLattice(lo, hi)
    assert lattice.levels >= 4  # the large boxes spread over several levels
    found = [torch.stack(pair, -1) for pair in lattice.pairs(x, max_pairs)]
    found = torch.cat(found) if found else torch.zeros(0, 2, dtype=torch.long)
    inside = ((x[:, None] >= lo[None]) & (x[:, None] <= hi[None])).all(-1)  # [M, N] brute force
    expected = inside.nonzero()
    assert len(expected) > 150
    assert torch.equal(torch.unique(found, dim=0), expected) and len(found) == len(expected)  # no duplicates
    assert len(lattice.keys) <= 8 * len(lo)


def test_no_boxes_and_no_points():
    empty = BoxLattice(torch.zeros(0, 3), torch.zeros(0, 3))
    assert list(empty.pairs(torch.rand(5, 3))) == []
    lattice = BoxLattice(*boxes(10, 2))
    assert sum(len(p) for p, _ in lattice.pairs(torch.zeros(0, 3))) == 0
