"""The fit loop. The trainer owns the optimisation; front doors (CLI, GUI) call `step()` or
iterate over `iterate()` and read the plain `TrainState`.

One step: draw random rays across all training images (a dynamic number of them, so the number
of samples per step stays near `target_samples` as the occupancy grid prunes space, as
Instant-NGP and nerfacc do) -> place samples (march the occupancy grid, or the proposal sampler's
fixed count per ray; marched samples behind surfaces dropped after a density pass where that pays,
`visibility`) -> render the field -> photometric loss on random backgrounds (images with
alpha), plus the proposal networks' histogram loss -> Adam. Every `grid_update_every` steps the
grid is refreshed from the field's density (under proposal sampling too: exports, carving and the
backends' schedules read it). All randomness comes from one generator that checkpoints
save, so a resumed run continues exactly as an uninterrupted one.
"""

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from onefield.cuda_ext import ops
from onefield.fields import Field
from onefield.fields.proposal import ProposalNetworks
from onefield.fields.registry import seeded
from onefield.renderers import Deferred, OccupancyGrid, RaySamples, march, march_visible, render, render_image
from onefield.renderers.carving import carve
from onefield.renderers.distortion import distortion_loss
from onefield.renderers.proposal import ProposalSamples, anneal_power, proposal_loss, sample_proposals
from onefield.scenes import Cameras, PosedImages
from onefield.scenes.frames import downscale_rgba
from onefield.errors import UserError

from .corrections import ColorCorrections, PoseCorrections
from .metrics import psnr, ssim


@dataclass
class TrainerConfig:
    steps: int = 20000
    """maximum optimisation steps"""
    minutes: float | None = None
    """training-time budget in minutes (evaluation not counted); stops at whichever limit comes first"""
    target_samples: int = 1 << 15
    """samples per step the dynamic ray batch aims for"""
    init_rays: int = 512
    """rays in the first step"""
    max_rays: int = 1 << 14
    """upper bound of the dynamic ray batch"""
    render_steps: int = 512
    """marching step = scene-box diagonal / render_steps"""
    cone_angle: float | None = None
    """step growth with distance, dt = max(step, t * cone_angle); None: 0 for a single-cascade (bounded)
    scene; with several cascades, one pixel's angle (1 / focal) but at least Instant-NGP's 1/256"""
    max_samples: int = 1024
    """samples per ray at most"""
    sampler: Literal["auto", "grid", "proposal"] = "auto"
    """where each ray's samples go: grid (march the occupancy grid, skipping empty cells), proposal
    (nerfacto's proposal networks place `field_samples` per ray) or auto (the one that measured best
    for the kind of scene: proposals for forward-facing captures, the grid for the others, see `resolved`)"""
    proposal_samples: tuple[int, ...] | None = None
    """samples per ray of each proposal network, coarse to fine (nerfacto: 256 96); None: one network of
    96 on forward-facing captures (fern: 27.0-27.1 dB at 2 minutes against 26.3-26.9 with two, in 11-35 %
    more steps), two of 128 and 64 elsewhere"""
    visibility: bool = True
    """grid sampling: march the rays in rounds with density alone, up to where each ray's transmittance
    runs out, then train the field only on the samples before that stop (nerfacc's visibility pass with
    Instant-NGP's compacted marching, `renderers.march_visible`): the same loss and gradients as a full
    march, since the render gives the samples behind a surface weight 0. It runs while it pays: every
    16th step, measuring the share of a full march hidden behind surfaces (fox: 67-80 % after its first
    minute; mic, carved, 10 %) and the share the rounds evaluate, and on every step while the hidden
    share is at least 0.3 times the evaluated one (a density costs about 0.3 of a trained sample)"""
    field_samples: int = 48
    """samples per ray of the field under proposal sampling"""
    proposal_lr: float = 1e-2
    """Adam learning rate of the proposal networks"""
    distortion: float | None = None
    """weight of mip-NeRF 360's distortion loss, which condenses each ray's weight onto one surface;
    None: nerfacto's 0.002 for real captures (no alpha), 0 for masked scenes"""
    refine_poses: bool = False
    """learn a per-view SE(3) correction of the training cameras with the field (real captures' poses are
    slightly off); evaluation, renders and exports use the refined poses"""
    pose_lr: float = 1e-3
    """Adam learning rate of the pose corrections (radians; translations in base-box half sizes)"""
    pose_lr_final_ratio: float = 0.01
    """the pose learning rate at the end relative to the start (its own exponential decay)"""
    appearance: bool = False
    """learn a per-view affine colour map (exposure, white balance changes between photos); novel views use
    the mean map"""
    appearance_lr: float = 1e-3
    """Adam learning rate of the colour maps"""
    coarse_images: float = 0.0
    """training progress until which rays come from half-resolution images (each pixel the mean of 2x2, the
    ray through its centre): the low frequencies first; 0: full resolution throughout"""
    grid_resolution: int = 128
    """occupancy-grid cells per axis"""
    grid_update_every: int = 16
    """steps between occupancy-grid refreshes"""
    grid_probes_per_sample: float = 0.25
    """occupancy-grid probes evaluated per refresh, at most this many per training sample the steps since
    the last refresh aim for (`target_samples`), and at most 1/8 of the cells; half uniform, half occupied"""
    grid_warmup_steps: int = 128
    """steps before the grid first prunes: until then every cell (of the visual hull, see `carve`) is
    sampled, so thin structures are learned before a refresh can cut them away (the first two
    refreshes probe every cell)"""
    carve: bool = True
    """start the occupancy grid from the visual hull of the training alphas (images with alpha
    only): the empty box is skipped from step 0 and what a view shows opaque is never pruned early"""
    grid_threshold: float | None = None
    """a cell is occupied when sigma * step exceeds min(this, the mean); None: 0.02 for unbounded captures
    (several cascades, no alpha), whose young fields spread a faint fog through the room, 0.01 elsewhere"""
    lr_warmup_steps: int = 100
    """linear learning-rate warm-up"""
    lr_final_ratio: float = 0.05
    """learning rate at the end relative to the start (exponential decay over the run)"""
    loss: str = "huber"
    """photometric loss: huber (smooth L1, delta 0.1) or mse"""
    random_background: bool = True
    """composite images with alpha on random colours while training (white when evaluating)"""
    eval_every: int = 2000
    """steps between evaluations on held-out views (0: only at the end)"""
    eval_max_views: int = 0
    """evaluate on at most this many held-out views during training (0: all)"""
    checkpoint_every: int = 2000
    """steps between checkpoints (0: only at the end)"""
    spike_factor: float = 20.0
    """a loss above this times its running mean counts as a divergence"""
    max_recoveries: int = 5
    """divergences tolerated (each restores the last good state and halves the learning rate)"""
    seed: int = 0
    """seed of the one generator behind every random choice"""
    chunk: int = 0
    """rays per chunk when rendering whole images (0: 8192 on CPU, 2^18 on CUDA, where small chunks
    leave the GPU idle behind kernel launches: 15 ms instead of 220 ms per 800x800 view on an H100)"""

    def check(self) -> None:
        """Raise a UserError naming the first bad option (called before a run folder is made; not in
        __post_init__, where tyro would turn the message into a usage screen)."""
        if self.loss not in ("huber", "mse"):
            raise UserError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        if self.steps <= 0 or (self.minutes is not None and self.minutes <= 0):
            raise UserError("steps and minutes must be positive")
        if not 0 <= self.coarse_images < 1:
            raise UserError(f"coarse_images is a fraction of the budget in [0, 1), got {self.coarse_images}")
        if self.sampler not in ("auto", "grid", "proposal"):
            raise UserError(f"sampler must be 'auto', 'grid' or 'proposal', got {self.sampler!r}")
        if self.grid_threshold is not None and not self.grid_threshold > 0:
            raise UserError(f"grid_threshold must be > 0 (or None for the scene's default), got {self.grid_threshold}")
        if self.distortion is not None and not self.distortion >= 0:
            raise UserError(f"distortion must be >= 0 (or None for the scene's default), got {self.distortion}")
        if self.proposal_samples is not None and (not self.proposal_samples or min(self.proposal_samples) < 1) \
                or self.field_samples < 1:
            raise UserError(f"proposal_samples (one count per proposal network, e.g. 128 64) and field_samples must "
                            f"be positive, got {self.proposal_samples} and {self.field_samples}")

    def resolved(self, data: PosedImages, kind: str = "volume") -> "TrainerConfig":
        """These settings with the scene-dependent defaults decided for `data` and a field of `kind`
        (`Field.kind`): `sampler` 'auto' and `distortion` None, as measured on two CPU cores (BENCHMARKS.md,
        "Real captures"). Splats rasterize, so their runs keep the grid (it serves their exports). Proposals for
        forward-facing captures (`forward_facing`: LLFF fern, 26.2 against 26.0 dB at 2 minutes, 27.9
        against 27.0 at 5), where the grid cannot prune the deep frustum box; the grid elsewhere: on
        unbounded captures (fox) its fields generalise better within minutes (26.1 against 24.3 dB at
        2 minutes), and bounded masked scenes carve it. The distortion loss on every real capture. The grid's
        threshold doubled on unbounded captures: fox 45.5 instead of 53 samples per ray at 2 minutes,
        for ~0.4 dB. One proposal network on forward-facing captures, where it measured faster and no worse."""
        sampler = self.sampler if self.sampler != "auto" else (
            "proposal" if forward_facing(data) and kind == "volume" else "grid")
        distortion = self.distortion if self.distortion is not None else (0.0 if data.has_alpha else 0.002)
        threshold = self.grid_threshold if self.grid_threshold is not None else (0.02 if unbounded(data) else 0.01)
        proposals = self.proposal_samples if self.proposal_samples is not None else (
            (96,) if forward_facing(data) else (128, 64))
        return dataclasses.replace(self, sampler=sampler, distortion=distortion, grid_threshold=threshold,
                                   proposal_samples=tuple(proposals))


@dataclass
class TrainState:
    """What a front door reads; plain values only."""

    step: int = 0
    loss: float = math.nan
    train_psnr: float = math.nan
    eval_psnr: float | None = None
    eval_ssim: float | None = None
    seconds: float = 0.0  # training time, evaluation excluded
    eta_seconds: float | None = None
    rays: int = 0  # in the last step
    total_rays: int = 0
    total_samples: int = 0  # samples the sampler placed (marched in full or proposed; see `Trainer._visible`)
    total_hidden: int = 0  # of those, the ones the visibility pass did not train the field on
    total_unmarched: int = 0  # of those, the ones its rounds never reached (no density either)
    hidden_share: float = 0.0  # of the last full march the visibility pass measured, the share behind the stops
    evaluated_share: float = 1.0  # of that march, the share its rounds gave a density
    samples_per_ray: float = 0.0
    rays_per_second: float = 0.0
    lr_scale: float = 1.0
    recoveries: int = 0
    occupied_fraction: float = 1.0
    gaussians: int = 0  # splat models: their count after the last step
    stage: int = 0  # distillation: the stage of the last step (1-3; 0 for a fit)
    preview: Tensor | None = field(default=None, repr=False)  # [H, W, 3] latest held-out render
    done: bool = False


def forward_facing(data: PosedImages) -> bool:
    """A real capture in one box, every pixel opaque (LLFF: the box around the cameras' frustums)."""
    return data.cascades == 1 and not data.has_alpha


def unbounded(data: PosedImages) -> bool:
    """A real capture in nested cascades, every pixel opaque (fox's room, the castle's surroundings)."""
    return data.cascades > 1 and not data.has_alpha


# a density without gradients costs about this share of a trained sample (2-core CPU, hash grid: a full
# visibility pass paid from 30 % hidden on; fox at 70 % took 25 % less per step, mic at 10 % 13 % more)
VISIBILITY_PAYS = 0.3
VISIBILITY_MEASURED_EVERY = 16  # steps between the visibility pass's measurements while it does not pay
LEARNED_BESIDE_FIELD = ("occupancy", "proposal", "poses", "colors", "strategy")  # checkpoint prefixes, see `Trainer.learned`


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class EvalResult:
    psnr: list[float]
    ssim: list[float]
    images: list[Tensor]  # [H, W, 3] renders
    targets: list[Tensor]  # [H, W, 3] ground truth on white
    seconds_per_view: float  # rendering only, metrics excluded
    appearance: str | None = None  # the colour map novel views were rendered with, where the run learns them

    @property
    def mean_psnr(self) -> float:
        return sum(self.psnr) / len(self.psnr)

    @property
    def mean_ssim(self) -> float:
        return sum(self.ssim) / len(self.ssim)


class Trainer:
    def __init__(self, model: Field, grid: OccupancyGrid, train: PosedImages, config: TrainerConfig,
                 held_out: PosedImages | None = None, device: str = "cpu"):
        config.check()
        config = config.resolved(train, getattr(model, "kind", "volume"))
        self.model, self.grid, self.config, self.device = model, grid, config, torch.device(device)
        self.train_data, self.held_out = train, held_out
        self.images = train.images.to(self.device)  # [N, H, W, 4] uint8
        self.cameras = train.cameras.to(self.device)
        self._coarse: tuple[Tensor, Cameras] | None = None  # the half-resolution images and their cameras
        if config.coarse_images > 0:
            half = self.cameras.scaled(0.5)
            self._coarse = downscale_rgba(self.images, half.width, half.height), half
        self._all_views = torch.arange(len(train), device=self.device)
        box = grid.aabb
        self.step_size = float((box[3:] - box[:3]).norm()) / config.render_steps
        # the proposal sampler's distance unit and the pose translations' scale: the box's mean half size
        self.spacing_unit = float((box[3:] - box[:3]).mean()) * 0.5
        self.cone_angle = config.cone_angle if config.cone_angle is not None else (
            max(1 / 256, 1 / float(self.cameras.fx.mean())) if grid.levels > 1 else 0.0)
        self.proposals: ProposalNetworks | None = None
        if config.sampler == "proposal":
            with seeded(config.seed + 1, self.device):
                self.proposals = ProposalNetworks(len(config.proposal_samples), grid.aabb, grid.levels, self.device,
                                                  lr=config.proposal_lr)
        self.poses = PoseCorrections(self.cameras, self.spacing_unit) if config.refine_poses else None
        self.colors = ColorCorrections(len(train), self.device) if config.appearance else None
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.optimizer = self._make_optimizer()
        self.state = TrainState(rays=config.init_rays)
        self._n_rays = float(config.init_rays)
        self._loss_ema: float | None = None
        self._good: dict | None = None
        self.last_eval_step: int | None = None

    def _make_optimizer(self) -> torch.optim.Adam:
        c = self.config
        groups = self.model.param_groups() + (self.proposals.param_groups() if self.proposals is not None else [])
        if self.poses is not None:
            groups += self.poses.param_groups(c.pose_lr, c.pose_lr_final_ratio)
        if self.colors is not None:
            groups += self.colors.param_groups(c.appearance_lr)
        for g in groups:
            g["base_lr"] = g["lr"]
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, fused=True)

    def _follow_schedule(self) -> None:
        """Let the field upsample / shrink / grow its rank; parameters that changed shape get fresh
        Adam moments (TensoRF rebuilds its optimizer after upsampling too)."""
        if self.model.update_schedule(self.progress(), self.grid if self._grid_ready() else None, self.generator):
            self.optimizer = self._make_optimizer()
            self._remember_good()

    def _grid_ready(self) -> bool:
        """Whether the grid says where the scene is: once it has been refreshed from the field a few
        times after warm-up."""
        return self.state.step >= self.config.grid_warmup_steps + 8 * self.grid_update_every

    # ---- one step -------------------------------------------------------------------------------
    def _batch(self, n_rays: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Random rays of the training images: origins, directions (through the pose corrections, with
        their gradients), background, target colour and the image of each ray."""
        coarse = self._coarse is not None and self.progress() < self.config.coarse_images
        images, cameras = self._coarse if coarse else (self.images, self.cameras)
        n, h, w = images.shape[:3]
        idx = torch.randint(0, n * h * w, (n_rays,), generator=self.generator, device=self.device)
        image, pixel = idx // (h * w), idx % (h * w)
        cameras = self.poses.apply(cameras, self._all_views) if self.poses is not None else cameras
        rays = cameras.rays(image, pixel % w, pixel // w)
        rgba = images.view(-1, 4)[idx].float() / 255.0  # [R, 4] premultiplied
        background = self._backgrounds(n_rays)
        target = rgba[:, :3] + (1.0 - rgba[:, 3:]) * background
        return rays.origins, rays.directions, background, target, image

    def _backgrounds(self, n: int) -> Tensor:
        """[n, 3] training backgrounds: random colours where the images have alpha, else white."""
        if self.config.random_background and self.train_data.has_alpha:
            return torch.rand(n, 3, generator=self.generator, device=self.device)
        return torch.ones(n, 3, device=self.device)

    def learned(self) -> dict[str, torch.nn.Module]:
        """Everything the run learns and saves, by checkpoint prefix: the field (no prefix), the occupancy
        grid, and the proposal networks, pose and colour corrections where the run has them."""
        beside = dict(zip(LEARNED_BESIDE_FIELD, (self.grid, self.proposals, self.poses, self.colors)))
        return {"": self.model} | {name: m for name, m in beside.items() if m is not None}

    @torch.no_grad()
    def refined(self, cameras: Cameras) -> Cameras:
        """Dataset cameras (as read) as the run sees them where poses are refined: the training cameras
        (`train_data.cameras` itself) by their own corrections, any other camera (held-out views) like
        its nearest training view; unchanged otherwise. Free views (orbits) need no correction: they
        are placed in the run's frame."""
        cams = cameras.to(self.device)
        if self.poses is None:
            return cams
        return self.poses.apply(cams, self._all_views if cameras is self.train_data.cameras else None)

    def _propose(self, rays_o: Tensor, rays_d: Tensor, near: float, far: float,
                 generator: torch.Generator | None) -> ProposalSamples:
        """Proposal sampling of rays [N, 3] over the scene's reach (jittered when `generator` is given)."""
        assert self.proposals is not None
        with torch.no_grad():  # placement carries no gradient (the native intersection has none either)
            t_near, t_far, _ = ops.ray_aabb_intersect(rays_o, rays_d, self.grid.outer_aabb())
            t_min = t_near.clamp(min=near)
            t_max = torch.maximum(t_far.clamp(max=far), t_min)  # misses: an empty interval
        anneal = anneal_power(self.state.step) if generator is not None else 1.0
        c = self.config
        return sample_proposals(rays_o, rays_d, t_min, t_max, self.proposals.density_fns, c.proposal_samples,
                                c.field_samples, unit=self.spacing_unit, anneal=anneal, generator=generator)

    @torch.no_grad()
    def render_rays(self, rays_o: Tensor, rays_d: Tensor, near: float, far: float, cone_angle: float | None = None,
                    chunk: int | None = None) -> dict[str, Tensor]:
        """Render rays [..., 3] for images (no jitter) by the run's sampler: marched through the grid in
        rounds that stop where each ray's transmittance runs out, or the proposal samples; `cone_angle`
        replaces the training one where the grid marches. `render_image`'s outputs, on no background."""
        chunk = chunk or self.config.chunk or (2**18 if self.device.type == "cuda" else 8192)
        if self.proposals is not None:
            sample = lambda o, d: self._samples(o, d, near, far, None)[0]  # noqa: E731
            return render_image(rays_o, rays_d, sample, self.shade, chunk=chunk)
        return render_image(rays_o, rays_d, self.grid, self.shade, chunk=chunk,
                            **self._march_options(near, far, cone_angle))

    def _samples(self, rays_o: Tensor, rays_d: Tensor, near: float, far: float,
                 generator: torch.Generator | None) -> tuple[RaySamples, ProposalSamples | None]:
        """The run's sampler on rays [N, 3]: the proposal networks' samples (jittered with `generator`)
        and what their loss needs, or the grid's marched samples and None."""
        if self.proposals is not None:
            proposed = self._propose(rays_o, rays_d, near, far, generator)
            return proposed.samples, proposed
        return march(rays_o, rays_d, self.grid, **self._march_options(near, far)), None

    def _march_options(self, near: float, far: float, cone_angle: float | None = None) -> dict[str, float]:
        """The marcher's step options of this run (`cone_angle` replaces the training one)."""
        return {"step_size": self.step_size, "near": near, "far": far, "max_samples": self.config.max_samples,
                "cone_angle": self.cone_angle if cone_angle is None else cone_angle}

    def _rgb_sigma(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        sigma, rgb = self.model(x, d)
        return rgb, sigma

    @property
    def shade(self) -> "Deferred | Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]":
        """What the renderers evaluate: the current model (`slim` swaps it), deferred where its colour is costly."""
        m = self.model
        return Deferred(m.density, m.color_at) if m.deferred_color else self._rgb_sigma

    def progress(self) -> float:
        """Fraction of the budget spent: steps or minutes, whichever is further along."""
        c = self.config
        p = self.state.step / c.steps
        if c.minutes is not None:
            p = max(p, self.state.seconds / (60.0 * c.minutes))
        return min(p, 1.0)

    def _set_lr(self) -> None:
        c = self.config
        warm = min(1.0, (self.state.step + 1) / max(c.lr_warmup_steps, 1))
        for g in self.optimizer.param_groups:  # a group may set its own final ratio and skip the warm-up
            ratio = g.get("final_ratio", c.lr_final_ratio)
            g["lr"] = g["base_lr"] * (warm if g.get("warmup", True) else 1.0) * ratio ** self.progress() * self.state.lr_scale

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.config.loss == "mse":
            return torch.nn.functional.mse_loss(pred, target)
        return torch.nn.functional.smooth_l1_loss(pred, target, beta=0.1)

    @property
    def grid_update_every(self) -> int:
        """Steps between grid refreshes: `grid_update_every`, 4x that under proposal sampling, where the
        grid only serves exports and the backends' schedules (on fox a refresh costs 3-4 steps)."""
        return self.config.grid_update_every * (4 if self.proposals is not None else 1)

    def _update_grid(self) -> None:
        c, step = self.config, self.state.step
        full = step < c.grid_warmup_steps + 2 * self.grid_update_every
        # At most 1/16 of the cells uniformly (plus as many occupied ones) per refresh, and at most
        # grid_probes_per_sample probes per training sample: a probe costs ~1/3 of a training sample
        # here, and on fox (3 cascades of 128^3) 1/16 + 1/16 of the cells took a third of the training
        # time (BENCHMARKS.md, "Occupancy-grid probes per sample"). The budget counts probes evaluated:
        # uniform draws that land on excluded (carved) cells cost nothing, so carved scenes draw more.
        budget = c.grid_probes_per_sample / 2 * self.grid_update_every * c.target_samples
        live = max(1.0 - self.grid.excluded_fraction(), 1e-3)
        n_cells = None if full else max(min(self.grid.n_cells // 16, int(budget / live)), 1)
        self.grid.update(self.model.density, step_size=self.step_size, threshold=c.grid_threshold,
                         n_cells=n_cells, generator=self.generator)
        self.state.occupied_fraction = self.grid.occupied_fraction()

    def _carve(self) -> None:
        kept = carve(self.grid, self.cameras, self.images[..., 3], near=self.cameras.near)
        if kept == 0.0:
            warnings.warn("space carving: no cell lies inside every training mask, so the masks (alpha) and the "
                          "camera poses disagree; training on the whole box. Check the poses' convention or "
                          "pass --trainer.no-carve.", stacklevel=2)
        self.state.occupied_fraction = self.grid.occupied_fraction()

    def step(self) -> TrainState:
        """One optimisation step; returns the updated state."""
        start = time.perf_counter()
        self.model.train()
        self._prepare_step()
        n_rays = int(self._n_rays)
        loss, rgb, target, n_samples = self._batch_loss(n_rays)
        return self._finish_step(start, loss, rgb.detach(), target, n_rays, n_samples)

    def _prepare_step(self) -> None:
        """What precedes a step's batch: carving (step 0), grid refresh, the field's schedule, the
        divergence guard's first snapshot and the learning rates."""
        c, s = self.config, self.state
        if s.step == 0 and c.carve and self.train_data.has_alpha:
            self._carve()
        if s.step >= c.grid_warmup_steps and s.step % self.grid_update_every == 0:
            self._update_grid()
        self._follow_schedule()
        if self._good is None:
            self._remember_good()
        self._set_lr()

    def _batch_loss(self, n_rays: int) -> tuple[Tensor, Tensor, Tensor, int]:
        """(loss, rendered colour [R, 3], its target [R, 3], samples the sampler placed: what sizes the
        batch) of `n_rays` random training rays."""
        c = self.config
        rays_o, rays_d, background, target, image = self._batch(n_rays)
        if self.proposals is None and self._visibility_pays():
            (samples, placed), proposed = self._visible(rays_o, rays_d), None
        else:
            samples, proposed = self._samples(rays_o, rays_d, self.cameras.near, self.cameras.far, self.generator)
            placed = samples.n_samples
        out = render(samples, rays_o, rays_d, self.shade)
        rgb = self.colors(out.rgb, out.opacity, image) if self.colors is not None else out.rgb
        rgb = rgb + (1.0 - out.opacity[:, None]) * background
        loss = self._loss(rgb, target)
        if proposed is not None:
            loss = loss + proposal_loss(proposed, out.weights)
        if c.distortion:
            loss = loss + c.distortion * distortion_loss(out.weights, samples, self.spacing_unit)
        for value in self.model.regularizers().values():
            loss = loss + value
        return loss, rgb, target, placed

    def _visible(self, rays_o: Tensor, rays_d: Tensor) -> tuple[RaySamples, int]:
        """The visibility pass on rays [N, 3]: the grid samples a render weighs, marched in rounds up to each
        ray's stop with density alone (`march_visible`), and the samples a full march would have placed
        (what sizes the batch, as without the pass: the pass makes a step cheaper, not bigger). Every
        VISIBILITY_MEASURED_EVERY-th step marches the rays in full too (the marcher alone, no field) to
        measure the shares; between, the full march's count is estimated from the last measured share."""
        s, options = self.state, self._march_options(self.cameras.near, self.cameras.far)
        samples, evaluated = march_visible(rays_o, rays_d, self.grid, self.model.density, **options)
        if s.step % VISIBILITY_MEASURED_EVERY == 0:
            placed = march(rays_o, rays_d, self.grid, **options).n_samples
            s.hidden_share = (placed - samples.n_samples) / placed if placed else 0.0
            s.evaluated_share = evaluated / placed if placed else 1.0
        else:
            placed = max(round(evaluated / max(s.evaluated_share, 1e-3)), evaluated)
        s.total_hidden += placed - samples.n_samples
        s.total_unmarched += placed - evaluated
        return samples, placed

    def _visibility_pays(self) -> bool:
        """Whether this step runs the visibility pass: every VISIBILITY_MEASURED_EVERY-th step (to measure)
        and while the trained samples it saves outweigh the densities it evaluates (at VISIBILITY_PAYS of
        a trained sample each). A function of the step and the saved state alone, so a resumed run makes
        the same choices."""
        s = self.state
        return self.config.visibility and (s.step % VISIBILITY_MEASURED_EVERY == 0
                                           or s.hidden_share >= VISIBILITY_PAYS * s.evaluated_share)

    def _finish_step(self, start: float, loss: Tensor, rgb: Tensor, target: Tensor, n_rays: int,
                     n_samples: int) -> TrainState:
        """The update from `loss` (or a recovery, when it diverged), the next batch size and the state."""
        c, s = self.config, self.state
        loss_value = float(loss.detach())
        if self._diverged(loss_value):
            self._recover(loss_value)
        else:
            if loss.requires_grad:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self._loss_ema = loss_value if self._loss_ema is None else 0.95 * self._loss_ema + 0.05 * loss_value
            s.loss, s.train_psnr = loss_value, psnr(rgb, target)
            # the next batch aims for target_samples; a batch with no samples doubles the rays
            ratio = c.target_samples / n_samples if n_samples else 2.0
            self._n_rays = min(max(self._n_rays * min(ratio, 4.0), 64.0), float(c.max_rays))
            s.samples_per_ray = n_samples / n_rays
            s.total_samples += n_samples
        s.step += 1
        elapsed = time.perf_counter() - start
        s.seconds += elapsed
        s.rays = n_rays
        s.total_rays += n_rays
        s.rays_per_second = 0.9 * s.rays_per_second + 0.1 * n_rays / elapsed if s.step > 1 else n_rays / elapsed
        s.eta_seconds = self._eta()
        return s

    def _eta(self) -> float | None:
        s, c = self.state, self.config
        if s.step == 0:
            return None
        by_steps = (c.steps - s.step) * s.seconds / s.step
        if c.minutes is None:
            return by_steps
        return max(0.0, min(by_steps, 60.0 * c.minutes - s.seconds))

    @property
    def finished(self) -> bool:
        c, s = self.config, self.state
        return s.step >= c.steps or (c.minutes is not None and s.seconds >= 60.0 * c.minutes)

    # ---- divergence guard -----------------------------------------------------------------------
    def _diverged(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        return self._loss_ema is not None and self.state.step > self.config.lr_warmup_steps and \
            loss > self.config.spike_factor * max(self._loss_ema, 1e-4)

    def _remember_good(self) -> None:
        self._good = {"modules": {name: copy.deepcopy(m.state_dict()) for name, m in self.learned().items()},
                      "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _recover(self, loss: float) -> None:
        s = self.state
        s.recoveries += 1
        assert self._good is not None
        for name, module in self.learned().items():
            module.load_state_dict(self._good["modules"][name])
        self.optimizer.load_state_dict(self._good["optimizer"])
        s.lr_scale *= 0.5
        if s.recoveries > self.config.max_recoveries:
            raise TrainingDiverged(f"loss diverged ({loss}) at step {s.step}, {s.recoveries} times; the model is back "
                                   "at its last good state. Lower the learning rates (e.g. --hashgrid.lr-encoding).")

    # ---- loops ----------------------------------------------------------------------------------
    def iterate(self) -> Iterator[TrainState]:
        """Steps until the budget is spent, evaluating every `eval_every` steps (yields after each
        step); marks the state done at the end."""
        c = self.config
        while not self.finished:
            state = self.step()
            if state.step % 500 == 0:
                self._remember_good()
            if c.eval_every and state.step % c.eval_every == 0 and not self.finished and self.held_out is not None:
                self.evaluate(max_views=c.eval_max_views or None)
            yield state
        self.state.done = True

    @torch.no_grad()
    def render_view(self, cameras: Cameras, index: int, background: Tensor | None = None,
                    cone_angle: float | None = None, color_view: int | None = None) -> dict[str, Tensor]:
        """Render camera `index` of `cameras` ('rgb' [H, W, 3], 'depth', 'opacity', 'samples_per_ray');
        `cone_angle` replaces the training one (the step's growth with distance) where the grid marches;
        `color_view`: the training view whose colour map applies (None: the mean map, for a novel view).
        Dataset cameras go through `refined` first."""
        self.model.eval()
        cams = cameras.to(self.device)
        rays = cams.image_rays(index)
        bg = torch.ones(3, device=self.device) if background is None else background.to(self.device)
        out = self.render_rays(rays.origins, rays.directions, cams.near, cams.far, cone_angle)
        if self.colors is not None:
            views = None if color_view is None else torch.full((rays.origins.shape[0],), color_view, device=self.device)
            out["rgb"] = self.colors(out["rgb"], out["opacity"], views)
        out["rgb"] = out["rgb"] + (1.0 - out["opacity"][:, None]) * bg
        return {k: v.reshape(cams.height, cams.width, *v.shape[1:]) for k, v in out.items()}

    @torch.no_grad()
    def evaluate(self, data: PosedImages | None = None, max_views: int | None = None) -> EvalResult:
        """PSNR and SSIM on held-out views, composited on white (the evaluation protocol)."""
        data = data if data is not None else self.held_out
        if data is None:
            raise UserError("no held-out views to evaluate on")
        n = len(data) if not max_views else min(max_views, len(data))
        cameras, own_colors = self.refined(data.cameras), data is self.train_data
        white = torch.ones(3)
        result = EvalResult([], [], [], [], 0.0)
        render_seconds = 0.0
        for i in range(n):
            start = time.perf_counter()
            pred = self.render_view(cameras, i, color_view=i if own_colors else None)["rgb"].clamp(0, 1)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            render_seconds += time.perf_counter() - start
            target = data.composite(i, white)
            # metrics on the render device: SSIM of an 800x800 view takes seconds on a CPU
            result.psnr.append(psnr(pred, target.to(pred.device)))
            result.ssim.append(ssim(pred, target.to(pred.device)))
            result.images.append(pred.cpu())
            result.targets.append(target)
        result.seconds_per_view = render_seconds / n
        result.appearance = None if self.colors is None else "each view's own" if own_colors else self.colors.describe()
        self.state.eval_psnr, self.state.eval_ssim = result.mean_psnr, result.mean_ssim
        self.last_eval_step = self.state.step
        self.state.preview = result.images[0]
        return result
