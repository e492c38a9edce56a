"""How Gaussians are added and removed while a splat model trains (gsplat's two strategies).

- `ADC`: 3DGS adaptive density control. The image-space gradient of each Gaussian's mean
  (pixels scaled to [-1, 1], as the original code measures it) is averaged over the views that saw it;
  above `grow_grad2d` a small Gaussian is cloned and a large one split in two (samples from itself,
  scales / 1.6); faint (and, after the first opacity reset, huge) ones are pruned; every
  `reset_every` steps every opacity is clamped to 2 x `prune_opacity`.
- `MCMC`: 3DGS as Markov chain Monte Carlo (Kheradmand et al. 2024). Faint Gaussians are relocated
  onto live ones drawn in proportion to opacity, the count grows 5 % per refinement up to the budget,
  and every step adds position noise scaled by each Gaussian's covariance, gated to the faint ones.
  Relocation keeps the rendered picture: N copies of a Gaussian of opacity o get
  1 - (1 - o)^(1/N) and the paper's scale correction.

Both edit the model's parameters in place (`.data`), and Adam's moments with them: copies start with
zero moments, removed Gaussians take theirs away. The per-Gaussian statistics are buffers of the
strategy module, so a checkpoint resumes mid-accumulation.
"""

import math

import torch
from torch import Tensor

from onefield.fields.splats import GaussianSplats, SplatsConfig, quat_rotation

MAX_COPIES = 51  # relocation's binomial table (gsplat's n_max)


def _edit(model: GaussianSplats, optimizer: torch.optim.Optimizer, keep: Tensor | None, new: dict[str, Tensor] | None,
          zero: Tensor | None = None) -> None:
    """Keep the Gaussians `keep` (bool [N] or None: all), append `new` (a value per parameter) and zero
    the Adam moments of the kept Gaussians in `zero` (indices into the kept ones)."""
    for name in GaussianSplats.PARAMETERS:
        p = getattr(model, name)
        state = optimizer.state.get(p, {})
        value = p.data if keep is None else p.data[keep]
        if new is not None:
            value = torch.cat([value, new[name].to(value)])
        p.data = value.contiguous()
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in state:
                continue
            moment = state[key] if keep is None else state[key][keep]
            if zero is not None:
                moment = moment.clone()
                moment[zero] = 0
            if new is not None:
                moment = torch.cat([moment, moment.new_zeros(new[name].shape)])
            state[key] = moment.contiguous()
        if p.grad is not None:
            p.grad = None


class ADC(torch.nn.Module):
    """3DGS adaptive density control (see the module docstring)."""

    def __init__(self, config: SplatsConfig):
        super().__init__()
        self.config = config
        self.register_buffer("grad2d", torch.zeros(0))  # [N] summed |d loss / d mean2d| (NDC-scaled)
        self.register_buffer("count", torch.zeros(0))  # [N] views that saw each Gaussian

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """The statistics take the saved Gaussian count."""
        for name in ("grad2d", "count"):
            if name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[name], device=self.grad2d.device))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _resize(self, n: int, device: torch.device) -> None:
        if self.grad2d.numel() != n:
            self.grad2d, self.count = torch.zeros(n, device=device), torch.zeros(n, device=device)

    @torch.no_grad()
    def after_backward(self, model: GaussianSplats, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        self._resize(len(model), model.means.device)
        if means2d.grad is None:
            return
        g = means2d.grad * means2d.new_tensor([width / 2, height / 2])
        seen = (radii > 0).all(-1)
        self.grad2d += torch.where(seen, g.norm(dim=-1), torch.zeros_like(self.grad2d))
        self.count += seen.float()

    def loss(self, model: GaussianSplats) -> Tensor | None:
        return None

    @torch.no_grad()
    def after_step(self, model: GaussianSplats, optimizer: torch.optim.Optimizer, step: int, refining: bool,
                   lr_means: float, generator: torch.Generator) -> bool:
        """Refine at this step (True when the Gaussians changed)."""
        c, changed = self.config, False
        if refining and step >= c.refine_start and step % c.refine_every == 0:
            self._refine(model, optimizer, step, generator)
            changed = True
        if step > 0 and step % c.reset_every == 0 and refining:
            limit = math.log(2 * c.prune_opacity / (1 - 2 * c.prune_opacity))
            model.opacity_logits.data.clamp_(max=limit)
            state = optimizer.state.get(model.opacity_logits, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].zero_()
        return changed

    def _refine(self, model: GaussianSplats, optimizer: torch.optim.Optimizer, step: int,
                generator: torch.Generator) -> None:
        c, n = self.config, len(model)
        self._resize(n, model.means.device)
        grads = self.grad2d / self.count.clamp(min=1)
        small = model.scales.amax(-1) <= c.grow_scale3d * model.extent
        high = grads > c.grow_grad2d
        room = max(c.max_gaussians - n, 0)
        if int(high.sum()) > room:  # the budget takes the steepest
            ranked = torch.where(high, grads, torch.full_like(grads, -1.0))
            high = torch.zeros_like(high)
            high[ranked.topk(room).indices] = True
        clone, split = high & small, high & ~small
        new = {name: getattr(model, name).data[clone] for name in GaussianSplats.PARAMETERS}
        split_new = self._split(model, split, generator)
        new = {name: torch.cat([new[name], split_new[name]]) for name in new}
        _edit(model, optimizer, ~split, new)
        prune = model.opacities < c.prune_opacity
        if step > c.reset_every:
            prune |= model.scales.amax(-1) > c.prune_scale3d * model.extent
        _edit(model, optimizer, ~prune, None)
        self.grad2d, self.count = torch.zeros(len(model), device=model.means.device), torch.zeros(len(model), device=model.means.device)

    @staticmethod
    def _split(model: GaussianSplats, mask: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Two Gaussians for each one in `mask`, drawn from it, 1.6x smaller (3DGS)."""
        scales, rot = model.scales[mask], quat_rotation(model.quats.data[mask])
        noise = torch.randn(2, *scales.shape, generator=generator, device=scales.device) * scales
        means = model.means.data[mask] + torch.einsum("nij,knj->kni", rot, noise)  # [2, M, 3]
        out = {name: getattr(model, name).data[mask].repeat(2, *([1] * (getattr(model, name).dim() - 1)))
               for name in GaussianSplats.PARAMETERS}
        out["means"] = means.reshape(-1, 3)
        out["log_scales"] = (scales / 1.6).log().repeat(2, 1)
        return out


class MCMC(torch.nn.Module):
    """3DGS as MCMC (see the module docstring)."""

    def __init__(self, config: SplatsConfig):
        super().__init__()
        self.config = config
        n = torch.arange(MAX_COPIES, dtype=torch.float64)
        self.binoms = torch.exp(torch.lgamma(n[:, None] + 1) - torch.lgamma(n[None] + 1)
                                - torch.lgamma((n[:, None] - n[None]).clamp(min=0) + 1)) * (n[None] <= n[:, None])

    def after_backward(self, model: GaussianSplats, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        pass

    def loss(self, model: GaussianSplats) -> Tensor | None:
        c = self.config
        return c.opacity_reg * model.opacities.mean() + c.scale_reg * model.scales.mean()

    @torch.no_grad()
    def after_step(self, model: GaussianSplats, optimizer: torch.optim.Optimizer, step: int, refining: bool,
                   lr_means: float, generator: torch.Generator) -> bool:
        c, changed = self.config, False
        if refining and step >= c.refine_start and step % c.refine_every == 0:
            self._relocate(model, optimizer, generator)
            self._grow(model, optimizer, generator)
            changed = True
        self._noise(model, lr_means, generator)  # every step, as gsplat's trainer does
        return changed

    def _relocation(self, opacities: Tensor, scales: Tensor, copies: Tensor) -> tuple[Tensor, Tensor]:
        """Opacity [M] and scales [M, 3] of each of `copies` [M] Gaussians that replace one (the paper's
        eq. 9: the sum over i <= N, k < i of C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1) rescales them)."""
        n = copies.clamp(1, MAX_COPIES - 1).double()
        o = opacities.double()
        new_o = 1 - (1 - o) ** (1 / n)
        top = int(n.max()) if n.numel() else 1
        i = torch.arange(1, top + 1, dtype=torch.float64, device=o.device)  # [I]
        k = torch.arange(top, dtype=torch.float64, device=o.device)  # [K]
        binom = self.binoms.to(o.device)[:top, :top]  # [I, K]: C(i - 1, k)
        terms = binom * (-1.0) ** k / (k + 1).sqrt() * new_o[:, None, None] ** (k + 1)  # [M, I, K]
        terms = terms * (i[:, None] <= n[:, None, None])
        new_s = (o / terms.sum((1, 2)))[:, None] * scales.double()
        return new_o.float(), new_s.float()

    def _copy_onto(self, model: GaussianSplats, sources: Tensor) -> Tensor:
        """Update the `sources` [M] (repeats allowed) to their shares of their copies; return
        the copies' opacity logits and log scales rows (as the sources now hold them)."""
        counts = torch.bincount(sources, minlength=len(model))[sources] + 1
        opac, scales = self._relocation(model.opacities[sources], model.scales[sources], counts)
        eps = torch.finfo(torch.float32).eps
        opac = opac.clamp(self.config.prune_opacity, 1 - eps)
        model.opacity_logits.data[sources] = torch.logit(opac)
        model.log_scales.data[sources] = scales.log()
        return sources

    def _relocate(self, model: GaussianSplats, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        dead = model.opacities <= self.config.prune_opacity
        n_dead = int(dead.sum())
        alive = (~dead).nonzero().flatten()
        if n_dead == 0 or alive.numel() == 0:
            return
        sources = alive[torch.multinomial(model.opacities[alive], n_dead, replacement=True, generator=generator)]
        self._copy_onto(model, sources)
        targets = dead.nonzero().flatten()
        for name in GaussianSplats.PARAMETERS:
            p = getattr(model, name)
            p.data[targets] = p.data[sources]
        _edit(model, optimizer, None, None, zero=torch.cat([sources, targets]))

    def _grow(self, model: GaussianSplats, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        n = len(model)
        add = min(self.config.max_gaussians, int(1.05 * n)) - n
        if add <= 0:
            return
        sources = torch.multinomial(model.opacities, add, replacement=True, generator=generator)
        self._copy_onto(model, sources)
        new = {name: getattr(model, name).data[sources] for name in GaussianSplats.PARAMETERS}
        _edit(model, optimizer, None, new, zero=sources)

    @staticmethod
    def _noise(model: GaussianSplats, lr_means: float, generator: torch.Generator) -> None:
        """Position noise through each Gaussian's covariance, for the faint ones (opacity below ~0.005)."""
        rot, s = quat_rotation(model.quats.data), model.scales
        cov = rot @ torch.diag_embed(s * s) @ rot.transpose(1, 2)
        gate = torch.sigmoid(100 * ((1 - model.opacities) - 0.995))[:, None]
        noise = torch.randn(model.means.shape, generator=generator, device=model.means.device) * gate
        model.means.data += torch.einsum("nij,nj->ni", cov, noise) * (lr_means * model.config.noise_lr)


STRATEGIES = {"adc": ADC, "mcmc": MCMC}
