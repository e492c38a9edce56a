"""The distillation loops: a student trainer that learns from a fitted teacher instead of (or beside)
the photos. Each keeps its trainer's surface (`step`, `iterate`, `TrainState`, `evaluate`,
checkpoints), so a distillation is driven, saved, resumed and shown like a fit.

- `VolumeDistiller` (a volumetric student): random rays of random views, marched through the
  teacher's occupancy grid (the student's grid is a copy), so both see the same samples. PVD's
  stages: (1) the clipped density logit and the 15-d feature (`Field.features`), (2) plus
  per-sample density logit and colour, (3) plus the volume-rendered colour. A splat teacher has no
  features: its `density(x)` / `color_at(x, d)` supervise the first two stages and its rasterized
  views (`TeacherViews`) the third.
- `SplatDistiller` (a splat student): Gaussians drawn from the teacher's density, then fitted to the
  teacher's renders of random views: colour, ray depth and opacity.

Every loss is PVD's: the L2 norm of the difference (not its mean), weighted as `DistillConfig` says.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onefield.fields.base import clip_logit
from onefield.renderers import render
from onefield.renderers.splatting import SplatRender
from onefield.scenes import Cameras, PosedImages
from onefield.scenes.views import random_cameras, resolve_mode

from .distill_config import PVD_STEPS, DistillConfig
from .splat_trainer import SplatTrainer, ViewTarget, points_from_field
from .trainer import Trainer, TrainerConfig

if TYPE_CHECKING:
    from .distill import Teacher

FEATURE_DECAY = 0.995  # PVD: the feature loss weight shrinks by this per step


def norm_loss(pred: Tensor, target: Tensor) -> Tensor:
    """PVD's loss: the L2 norm of the difference over the whole batch."""
    return torch.linalg.vector_norm(pred - target)


def stage_of(progress: float, ends: tuple[float, float]) -> int:
    """The distillation stage (1, 2 or 3) at `progress` in [0, 1], stages ending at `ends`."""
    return 1 if progress < ends[0] else 2 if progress < ends[1] else 3


@dataclass
class TeacherSamples:
    logit: Tensor  # [S] clipped density logit
    feat: Tensor | None  # [S, 15] (None: a splat teacher has no features)
    sigma: Tensor  # [S]
    rgb: Tensor  # [S, 3]
    colored: Tensor | None  # [S] bool: where the colour is defined (splats: where a Gaussian reaches)


@torch.no_grad()
def teacher_samples(teacher: torch.nn.Module, x: Tensor, d: Tensor) -> TeacherSamples:
    """What the teacher says at positions x [S, 3] seen along d [S, 3]."""
    if getattr(teacher, "kind", "volume") == "splats":
        sigma, rgb = teacher(x, d)
        return TeacherSamples(clip_logit(torch.log(sigma)), None, sigma, rgb, sigma > 0)
    logit, feat = teacher.raw(x)
    return TeacherSamples(clip_logit(logit), feat, teacher.activate(x, logit), teacher.color(feat, d), None)


class TeacherViews:
    """A rolling pool of `size` views rendered by the teacher from random cameras (premultiplied colour,
    ray depth, opacity). View k's camera comes from a generator seeded with (seed, k) alone, and the pool
    at step s holds views s // every ... s // every + size - 1 (view k in slot k % size), so a resumed
    run re-renders exactly the pool an uninterrupted one has."""

    def __init__(self, teacher: Trainer, reference: Cameras, mode: str, center: Tensor, size: int, every: int,
                 seed: int):
        self.teacher, self.reference, self.mode, self.center = teacher, reference, mode, center
        self.size, self.every, self.seed = size, max(every, 1), seed
        self.first: int | None = None
        device, (h, w) = reference.device, (reference.height, reference.width)
        self.rgb = torch.zeros(size, h, w, 3, device=device)
        self.depth = torch.zeros(size, h, w, device=device)
        self.opacity = torch.zeros(size, h, w, device=device)
        self.c2w = torch.zeros(size, 3, 4, device=device)
        self.intrinsics = torch.zeros(4, size, device=device)  # fx, fy, cx, cy

    def camera(self, k: int) -> Cameras:
        """View k's camera (the same for every run with this seed)."""
        generator = torch.Generator(device=self.reference.device).manual_seed(self.seed * 1_000_003 + k)
        return random_cameras(self.reference, 1, self.mode, self.center, generator)

    @torch.no_grad()
    def _render(self, k: int) -> None:
        cams, slot = self.camera(k), k % self.size
        out = self.teacher.render_view(cams, 0, background=torch.zeros(3))
        self.rgb[slot], self.depth[slot], self.opacity[slot] = out["rgb"], out["depth"], out["opacity"]
        self.c2w[slot] = cams.c2w[0]
        self.intrinsics[:, slot] = torch.stack([cams.fx[0], cams.fy[0], cams.cx[0], cams.cy[0]])

    def update(self, step: int) -> None:
        """Bring the pool to step `step` (renders only the views that entered it)."""
        first = step // self.every
        start = first if self.first is None else max(self.first + self.size, first)
        for k in range(start, first + self.size):
            self._render(k)
        self.first = first

    @property
    def cameras(self) -> Cameras:
        """The pooled views' cameras [size], slot by slot."""
        r = self.reference
        return Cameras(self.c2w, *self.intrinsics, r.width, r.height, r.near, r.far)

    def rays(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """n random pixels of the pool: origins [n, 3], directions [n, 3], premultiplied colour [n, 3], opacity [n]."""
        h, w = self.reference.height, self.reference.width
        idx = torch.randint(0, self.size * h * w, (n,), generator=generator, device=self.rgb.device)
        slot, pixel = idx // (h * w), idx % (h * w)
        rays = self.cameras.rays(slot, pixel % w, pixel // w)
        return rays.origins, rays.directions, self.rgb.view(-1, 3)[idx], self.opacity.view(-1)[idx]


def view_mode(grid: torch.nn.Module, distill: DistillConfig) -> str:
    """Where the random views of `grid`'s scene lie: `distill.views` with 'auto' decided."""
    return resolve_mode(distill.views, grid.levels == 1)


def view_pool(trainer: Trainer, teacher: "Teacher", distill: DistillConfig) -> TeacherViews:
    """The pool of teacher views a distiller draws from, in the student's frame and image size."""
    return TeacherViews(teacher.trainer, trainer.cameras.pinhole(), view_mode(trainer.grid, distill),
                        trainer.grid.center, distill.pool_views, distill.refresh_every, trainer.config.seed)


class VolumeDistiller(Trainer):
    """A volumetric student taught by `teacher` (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, grid: torch.nn.Module, train: PosedImages, config: TrainerConfig,
                 held_out: PosedImages | None, device: str, teacher: "Teacher", distill: DistillConfig):
        super().__init__(model, grid, train, config, held_out, device)
        self.teacher, self.distill = teacher, distill
        self.mode = view_mode(grid, distill)
        self.pool = view_pool(self, teacher, distill) if teacher.kind == "splats" else None

    def _grid_ready(self) -> bool:
        return True  # the teacher's grid: where the scene is, from the first step

    def _prepare_step(self) -> None:
        """The schedule and learning rates; the grid stays the teacher's (no carving, no refresh). A new
        stage restarts the divergence guard's running loss: the stages' losses differ in scale."""
        s = self.state
        stage = stage_of(self.progress(), self.distill.stage_ends)
        if s.stage and stage != s.stage:
            self._loss_ema = None
        s.stage = stage
        self._follow_schedule()
        if self._good is None:
            self._remember_good()
        self._set_lr()

    def _rays(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """n rays: origins [n, 3], directions [n, 3], backgrounds [n, 3], and the colour [n, 3] on that
        background where the batch supplies one (photos, pooled splat views; `given` [n] True), to be
        replaced by the teacher's render of the same samples elsewhere."""
        n_photo = n // 2 if self.distill.images else 0
        n_view = n - n_photo
        if self.pool is not None:
            self.pool.update(self.state.step)
            o, d, rgb, alpha = self.pool.rays(n_view, self.generator)
            background = self._backgrounds(n_view)
            target, given = rgb + (1 - alpha[:, None]) * background, torch.ones(n_view, dtype=torch.bool, device=o.device)
        else:
            cams = random_cameras(self.cameras, n_view, self.mode, self.grid.center, self.generator)
            uv = torch.rand(n_view, 2, generator=self.generator, device=self.device)
            rays = cams.rays(torch.arange(n_view, device=self.device), uv[:, 0] * cams.width - 0.5,
                             uv[:, 1] * cams.height - 0.5)
            o, d, background = rays.origins, rays.directions, self._backgrounds(n_view)
            target, given = torch.zeros_like(o), torch.zeros(n_view, dtype=torch.bool, device=o.device)
        if n_photo:
            po, pd, pb, pt, _ = self._batch(n_photo)
            o, d, background, target = (torch.cat(p) for p in ((o, po), (d, pd), (background, pb), (target, pt)))
            given = torch.cat([given, torch.ones(n_photo, dtype=torch.bool, device=o.device)])
        return o, d, background, target, given

    def _batch_loss(self, n_rays: int) -> tuple[Tensor, Tensor, Tensor, int]:
        dc, stage = self.distill, self.state.stage
        rays_o, rays_d, background, target, given = self._rays(n_rays)
        samples, _ = self._samples(rays_o, rays_d, self.cameras.near, self.cameras.far, self.generator)
        if samples.n_samples == 0:  # every ray missed the teacher's scene: nothing to learn from
            return rays_o.new_zeros(()), background, background, 0
        x, d = samples.midpoints(rays_o, rays_d)
        t = teacher_samples(self.teacher.model, x, d)
        logit, feat = self.model.raw(x)
        clipped = clip_logit(logit)
        rgb = self.model.color(feat, d)
        loss = rays_o.new_zeros(())
        if t.feat is not None:
            weight = dc.feature_weight * FEATURE_DECAY ** (PVD_STEPS * self.progress())
            loss = loss + weight * norm_loss(torch.cat([clipped[:, None], feat], 1), torch.cat([t.logit[:, None], t.feat], 1))
        # a splat teacher's density is a view of its Gaussians, not what its rasterized images show:
        # it guides the first stages only, its views take over in the third
        if stage < 3 or t.feat is not None:
            if stage > 1 or t.feat is None:
                colored = slice(None) if t.colored is None else t.colored
                loss = loss + dc.sigma_weight * norm_loss(clipped, t.logit)
                loss = loss + dc.color_weight * norm_loss(rgb[colored], t.rgb[colored])
        out = render(samples, rays_o, rays_d, lambda *_: (rgb, self.model.activate(x, logit)))
        pred = out.rgb + (1 - out.opacity[:, None]) * background
        with torch.no_grad():
            taught = render(samples, rays_o, rays_d, lambda *_: (t.rgb, t.sigma))
            target = torch.where(given[:, None], target, taught.rgb + (1 - taught.opacity[:, None]) * background)
        if stage == 3:
            loss = loss + dc.rgb_weight * norm_loss(pred, target)
        for value in self.model.regularizers().values():
            loss = loss + value
        return loss, pred, target, samples.n_samples


class SplatDistiller(SplatTrainer):
    """A splat student taught by `teacher` (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, grid: torch.nn.Module, train: PosedImages, config: TrainerConfig,
                 held_out: PosedImages | None, device: str, teacher: "Teacher", distill: DistillConfig):
        super().__init__(model, grid, train, config, held_out, device)
        self.teacher, self.distill = teacher, distill
        self.pool = view_pool(self, teacher, distill)

    @torch.no_grad()
    def initial_points(self) -> tuple[Tensor, Tensor | None]:
        """Points drawn from the teacher's density in its occupied cells, coloured by it."""
        t = self.teacher
        return points_from_field(t.model, t.trainer.grid, self.model.config.init_count, self.generator, str(t.run_dir))

    def _view(self) -> ViewTarget:
        """A pooled teacher view on a random background (with `images`, every other step a training photo)."""
        if self.distill.images and self.state.step % 2:
            return super()._view()
        self.pool.update(self.state.step)
        slot = int(torch.randint(0, self.pool.size, (1,), generator=self.generator, device=self.device))
        background = self._backgrounds(1)[0]
        rgb = self.pool.rgb[slot] + (1 - self.pool.opacity[slot, ..., None]) * background
        return ViewTarget(self.pool.cameras, slot, background, rgb, None, self.pool.depth[slot], self.pool.opacity[slot])

    def _view_loss(self, out: SplatRender, view: ViewTarget) -> Tensor | float:
        """L1 of the ray depth (in scene-extent units) and of the opacity against the teacher's view."""
        if view.depth is None or view.opacity is None:
            return 0.0
        dc = self.distill
        return (dc.depth_weight * (out.depth - view.depth).abs().mean() / self.model.extent
                + dc.alpha_weight * (out.opacity - view.opacity).abs().mean())
