"""The fit loop of Gaussian splats: the volumetric `Trainer`'s loop, budget, learning-rate schedule,
divergence guard, evaluation and checkpoints, with a splat step.

One step: one training image, drawn at random, rasterized whole on a random background (images
with alpha) -> (1 - w) L1 + w (1 - SSIM) (3DGS, w = `ssim_weight`) -> Adam -> the densification
strategy (`splat_strategy`) adds, moves and removes Gaussians. The SH degree in use grows by one
every `sh_degree_every` steps. The occupancy grid is no sampler here: it is refreshed from the
splats' `density` before each checkpoint and at the end, for the exporters that read it (mesh
bounds, marching cubes).

The first step places the Gaussians (`initial_points`): the dataset's sparse points, random
points in the visual hull (images with alpha, carved like a volume's grid) or the box, or points
drawn from a fitted volumetric run's density, coloured by its field.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from onefield.errors import UserError
from onefield.fields.splats import GaussianSplats
from onefield.renderers import OccupancyGrid
from onefield.renderers.splatting import SplatRender
from onefield.scenes import Cameras, PosedImages

from .metrics import psnr, structural_similarity
from .splat_strategy import STRATEGIES
from .trainer import Trainer, TrainerConfig, TrainState

REFRESH_CHUNK = 1 << 20  # cell centres per density query of the grid refresh

VOLUME_CANDIDATES = 8  # points probed per Gaussian drawn from a volumetric run


def scene_extent(cameras: Cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (3DGS's scene radius)."""
    centres = cameras.c2w[:, :, 3]
    return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max().clamp(min=1e-6))


@dataclass
class ViewTarget:
    """One view a splat step renders and the image it must match."""

    cameras: Cameras
    index: int  # the view in `cameras`
    background: Tensor  # [3]
    rgb: Tensor  # [H, W, 3] on `background`
    color_view: int | None = None  # the training view whose colour map applies (None: no map)
    depth: Tensor | None = None  # [H, W] a teacher's expected ray depth, where distillation supplies it
    opacity: Tensor | None = None  # [H, W]


class SplatTrainer(Trainer):
    """`Trainer` for a `GaussianSplats` model (same constructor, state and front-door surface)."""

    model: GaussianSplats

    def __init__(self, model: GaussianSplats, grid: OccupancyGrid, train: PosedImages, config: TrainerConfig,
                 held_out: PosedImages | None = None, device: str = "cpu"):
        if config.refine_poses:
            raise UserError("splats do not refine camera poses yet (--trainer.refine-poses): the rasterizer has no "
                            "gradient for the cameras; fit without it")
        if config.sampler == "proposal":
            raise UserError("splats are rasterized, not sampled along rays: --trainer.sampler proposal does not apply "
                            "to them; fit without it")
        if train.cameras.distorted or (held_out is not None and held_out.cameras.distorted):
            raise UserError("the splat rasterizer models pinhole cameras only and these images have lens distortion; "
                            "resample them first (`onefield.scenes.undistort.undistorted`, which `FitJob` applies)")
        model.set_extent(scene_extent(train.cameras))
        super().__init__(model, grid, train, config, held_out, device)
        self.strategy = STRATEGIES[model.config.strategy](model.config).to(self.device)
        self.state.rays = train.cameras.width * train.cameras.height

    def learned(self) -> dict[str, torch.nn.Module]:
        return super().learned() | {"strategy": self.strategy}

    @property
    def sh_degree(self) -> int:
        c = self.model.config
        return min(c.sh_degree, self.state.step // c.sh_degree_every)

    # ---- initialisation -------------------------------------------------------------------------
    @torch.no_grad()
    def initial_points(self) -> tuple[Tensor, Tensor | None]:
        """(points [N, 3], colours [N, 3] in [0, 1] or None) where the first Gaussians go."""
        c, data = self.model.config, self.train_data
        if c.init_from:
            return points_from_run(Path(c.init_from), c.init_count, self.device, self.generator)
        if c.init in ("auto", "points") and data.points is not None and len(data.points) > 0:
            return data.points.to(self.device), data.point_colors.to(self.device).float() / 255.0
        if c.init == "points":
            raise UserError(f"{data.names[0]}...: the dataset has no sparse points (--splats.init points needs a COLMAP "
                            "project or `onefield process` output); use --splats.init random")
        if self.config.carve and data.has_alpha:
            self._carve()
        return self._random_points(c.init_count), None

    def _random_points(self, n: int) -> Tensor:
        """n points uniform in the cells of the base cascade not carved away, or spread evenly over
        the cascades of an unbounded scene (uniform in contracted space, like its samples)."""
        grid, size = self.grid, self.grid.resolution**3
        if grid.levels > 1:
            per = [n // grid.levels + (k < n % grid.levels) for k in range(grid.levels)]
            cells = torch.cat([torch.randint(k * size, (k + 1) * size, (m,), generator=self.generator, device=self.device)
                               for k, m in enumerate(per)])
        else:
            live = (grid.occs[:size] >= 0).nonzero().flatten()
            cells = live[torch.randint(0, live.numel(), (n,), generator=self.generator, device=self.device)]
        jitter = torch.rand(n, 3, generator=self.generator, device=self.device)
        return grid.cell_points(cells, jitter)

    # ---- one step -------------------------------------------------------------------------------
    def _view(self) -> "ViewTarget":
        """What this step fits: a training image drawn at random, on a random background."""
        index = int(torch.randint(0, len(self.train_data), (1,), generator=self.generator, device=self.device))
        background = self._backgrounds(1)[0]  # one colour for the whole image (3DGS)
        rgba = self.images[index].float() / 255.0  # [H, W, 4] premultiplied
        return ViewTarget(self.cameras, index, background, rgba[..., :3] + (1.0 - rgba[..., 3:]) * background, index)

    def _view_loss(self, out: SplatRender, view: "ViewTarget") -> Tensor | float:
        """Terms beyond the photometric loss that a target carries (a training image: none)."""
        return 0.0

    def _lr_means(self) -> float:
        return next(g["lr"] for g in self.optimizer.param_groups if g.get("name") == "means")

    def step(self) -> TrainState:
        c, s, sc = self.config, self.state, self.model.config
        start = time.perf_counter()
        self.model.train()
        if len(self.model) == 0:
            self.model.initialise(*self.initial_points())
        if self._good is None:
            self._remember_good()
        self._set_lr()
        view = self._view()
        out = self.model.render(view.cameras, view.index, view.background, self.sh_degree)
        out.means2d.retain_grad()
        rgb, target = out.rgb, view.rgb
        if self.colors is not None and view.color_view is not None:
            views = torch.full((rgb.shape[0] * rgb.shape[1],), view.color_view, device=self.device)
            rgb = self.colors(rgb.reshape(-1, 3), out.opacity.reshape(-1), views).reshape(rgb.shape)
        loss = (1 - sc.ssim_weight) * (rgb - target).abs().mean()
        if sc.ssim_weight:
            loss = loss + sc.ssim_weight * (1 - structural_similarity(rgb, target))
        loss = loss + self._view_loss(out, view)
        regularizer = self.strategy.loss(self.model)
        if regularizer is not None:
            loss = loss + regularizer
        loss_value = float(loss.detach())
        if self._diverged(loss_value):
            self._recover(loss_value)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.strategy.after_backward(self.model, out.means2d, out.radii, view.cameras.width, view.cameras.height)
            self.optimizer.step()
            refining = self.progress() < sc.refine_until
            if self.strategy.after_step(self.model, self.optimizer, s.step, refining, self._lr_means(), self.generator):
                self._remember_good()
            self._loss_ema = loss_value if self._loss_ema is None else 0.95 * self._loss_ema + 0.05 * loss_value
            s.loss, s.train_psnr = loss_value, psnr(rgb.detach(), target)
        s.step += 1
        elapsed = time.perf_counter() - start
        s.seconds += elapsed
        n_pixels = rgb.shape[0] * rgb.shape[1]
        s.total_rays += n_pixels
        s.gaussians = len(self.model)
        s.rays_per_second = 0.9 * s.rays_per_second + 0.1 * n_pixels / elapsed if s.step > 1 else n_pixels / elapsed
        s.eta_seconds = self._eta()
        if c.checkpoint_every and s.step % c.checkpoint_every == 0:
            self.refresh_grid()  # the checkpoint written after this step carries it
        return s

    @torch.no_grad()
    def refresh_grid(self) -> None:
        """The occupancy grid from the splats' density at every cell centre (excluded cells stay so), for the
        exporters; centres in chunks, so the torch twin of the query stays within memory too."""
        grid, model = self.grid, self.model
        cells = torch.arange(grid.n_cells, device=grid.aabb.device).split(REFRESH_CHUNK)
        sigma = torch.cat([model.density(grid.cell_points(i, torch.full((len(i), 3), 0.5, device=i.device)))
                           for i in cells])
        values = sigma.view(grid.levels, *[grid.resolution] * 3) * self.step_size
        # Gaussians far thinner than a cell have no density at its centre (mcmc's scale regulariser takes mic's to
        # 1e-9): the cells holding a visible Gaussian's mean, and their neighbours, count as occupied too
        held = grid.holding(model.means[model.opacities >= model.config.prune_opacity].detach())
        grid.assign_(torch.where(held, values.clamp(min=1.0), values), threshold=self.config.grid_threshold)
        self.state.occupied_fraction = self.grid.occupied_fraction()

    def iterate(self) -> Iterator[TrainState]:
        yield from super().iterate()
        self.refresh_grid()

    # ---- rendering ------------------------------------------------------------------------------
    @torch.no_grad()
    def render_view(self, cameras: Cameras, index: int, background: Tensor | None = None,
                    cone_angle: float | None = None, color_view: int | None = None) -> dict[str, Tensor]:
        """As `Trainer.render_view`, rasterized ('samples_per_ray' is 0: nothing is sampled)."""
        self.model.eval()
        cams = cameras.to(self.device)
        bg = torch.ones(3, device=self.device) if background is None else background.to(self.device)
        out = self.model.render(cams, index, torch.zeros(3, device=self.device) if self.colors is not None else bg)
        rgb, opacity = out.rgb, out.opacity
        if self.colors is not None:
            views = None if color_view is None else torch.full((rgb.shape[0] * rgb.shape[1],), color_view,
                                                               device=self.device)
            rgb = self.colors(rgb.reshape(-1, 3), opacity.reshape(-1), views).reshape(rgb.shape)
            rgb = rgb + (1.0 - opacity[..., None]) * bg
        return {"rgb": rgb, "depth": out.depth, "opacity": opacity, "samples_per_ray": torch.zeros_like(opacity)}


@torch.no_grad()
def points_from_run(run_dir: Path, n: int, device: torch.device, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`points_from_field` of a fitted volumetric run."""
    from .runs import load_trained

    _, field, grid = load_trained(run_dir, str(device))
    if getattr(field, "kind", "volume") != "volume":
        raise UserError(f"{run_dir}: --splats.init-from takes a volumetric run, this one is {field.name}")
    return points_from_field(field, grid, n, generator, str(run_dir))


@torch.no_grad()
def points_from_field(field: torch.nn.Module, grid: OccupancyGrid, n: int, generator: torch.Generator,
                      source: str) -> tuple[Tensor, Tensor]:
    """n points [n, 3] drawn from a field (anything with `density` and `color_at`: a volume or splats) in
    proportion to its opacity in the occupied cells of `grid`, with the colour [n, 3] it shows there
    (averaged over the six axis directions); errors name `source`."""
    device = grid.aabb.device
    occupied = grid.binary().flatten().nonzero().flatten()
    if occupied.numel() == 0:
        raise UserError(f"{source}: the run's occupancy grid is empty, no point to start from")
    cells = occupied[torch.randint(0, occupied.numel(), (n * VOLUME_CANDIDATES,), generator=generator, device=device)]
    x = grid.cell_points(cells, torch.rand(cells.numel(), 3, generator=generator, device=device))
    cell = float((grid.aabb[3:] - grid.aabb[:3]).max()) / grid.resolution
    weight = 1 - torch.exp(-field.density(x) * cell)
    if float(weight.sum()) <= 0:
        raise UserError(f"{source}: the field has no density in its occupied cells, no point to start from")
    x = x[torch.multinomial(weight, n, replacement=int(weight.count_nonzero()) < n, generator=generator)]
    axes = torch.cat([torch.eye(3, device=device), -torch.eye(3, device=device)])
    colors = torch.stack([field.color_at(x, a.expand_as(x)) for a in axes]).mean(0)
    return x, colors
