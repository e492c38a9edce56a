"""Proposal density networks (mip-NeRF 360, nerfacto): tiny hash-grid densities that learn, from the
field's own compositing weights, where along a ray the field has something to show. They are not a
backend: the proposal sampler (`renderers.proposal`) takes their `forward` as density callables, so
every backend trains with them unchanged. nerfacto's sizes: 5 levels of 2 features, 2^17 entries,
the first network up to resolution 128, the second to 256, one hidden layer of 16."""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from onefield.cuda_ext import HashGridConfig, HashGridEncoding
from onefield.cuda_ext.geometry import contract_unit, inside_reach

from .base import run_mlp, trunc_exp

PROPOSAL_RESOLUTIONS = (128, 256)  # finest grid of proposal network i (the last one repeats)


class ProposalDensity(torch.nn.Module):
    """x [N, 3] (world) -> sigma [N]: hash encoding of the contracted position, one hidden layer."""

    def __init__(self, aabb: Tensor, cascades: int, max_resolution: int, device: torch.device | str = "cpu",
                 hidden: int = 16):
        super().__init__()
        self.cascades = cascades
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).flatten().clone())
        config = HashGridConfig(n_levels=5, n_features=2, log2_table_size=17, base_resolution=16,
                                max_resolution=max_resolution)
        self.encoding = HashGridEncoding(config, device=device)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(self.encoding.out_dim, hidden), torch.nn.ReLU(inplace=True),
                                       torch.nn.Linear(hidden, 1))
        self.to(device)

    def forward(self, x: Tensor) -> Tensor:
        logit = run_mlp(self.mlp, self.encoding(contract_unit(x, self.aabb, self.cascades)))[:, 0]  # [N]
        return trunc_exp(logit - 1.0) * inside_reach(x, self.aabb, self.cascades)


class ProposalNetworks(torch.nn.Module):
    """One `ProposalDensity` per proposal level, coarse to fine."""

    def __init__(self, levels: int, aabb: Sequence[float] | Tensor, cascades: int, device: torch.device | str = "cpu",
                 lr: float = 1e-2):
        super().__init__()
        box = torch.as_tensor(aabb, dtype=torch.float32).flatten()
        self.lr = lr
        self.nets = torch.nn.ModuleList(
            ProposalDensity(box, cascades, PROPOSAL_RESOLUTIONS[min(i, len(PROPOSAL_RESOLUTIONS) - 1)], device)
            for i in range(levels))

    @property
    def density_fns(self) -> list[torch.nn.Module]:
        return list(self.nets)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "proposal", "params": list(self.parameters()), "lr": self.lr}]
