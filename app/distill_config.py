"""The options of `onefield distill` (a light module: the CLI builds its options from it without
importing the distillation engine)."""

from dataclasses import dataclass

from onefield.errors import UserError
from onefield.scenes.views import VIEW_MODES, ViewMode

PVD_STEPS = 30_000  # PVD's run length: its stage ends and feature-weight decay are in its steps


@dataclass
class DistillConfig:
    images: bool = False
    """also learn from the real training photos: half of each batch's rays (a splat student: every other view)
    target the photo instead of the teacher's render"""
    views: ViewMode = "auto"
    """where the random views lie: sphere (around the scene, over the training cameras' range of distances and
    elevations), cameras (between two training cameras) or auto (the sphere for bounded scenes, else cameras)"""
    samples: int = 4096
    """samples per step the student's dynamic ray batch aims for (a fit's target_samples). Per-sample targets make
    every sample count, so more, smaller steps learn faster than a fit's 32,768: on mic, 60 s of hashgrid -> mlp
    reach 14.6 dB with 32,768 samples a step, 23.3 dB with 4,096 (BENCHMARKS.md, "Distillation")"""
    stage_ends: tuple[float, float] = (2000 / PVD_STEPS, 5000 / PVD_STEPS)
    """fractions of the budget where stage 1 (features and density logit) and stage 2 (plus per-sample density
    and colour) end; stage 3 adds the rendered colour (PVD: 2,000 and 5,000 of 30,000 steps)"""
    feature_weight: float = 0.002
    """weight of the feature + clipped density logit loss, decayed by 0.995 per PVD step (PVD)"""
    sigma_weight: float = 0.002
    """weight of the per-sample clipped density logit loss (PVD)"""
    color_weight: float = 0.002
    """weight of the per-sample colour loss (PVD)"""
    rgb_weight: float = 1.0
    """weight of the volume-rendered colour loss (PVD)"""
    pool_views: int = 64
    """teacher renders kept for students that learn from whole views (splats) and for splat teachers"""
    refresh_every: int = 4
    """steps between replacing the oldest pooled view by a new random one"""
    depth_weight: float = 0.1
    """splat students: weight of the L1 of the ray depth (in scene extents) against the teacher's renders"""
    alpha_weight: float = 0.1
    """splat students: weight of the L1 of the opacity against the teacher's renders"""
    report_views: int = 8
    """random views on which the final report compares the student with the teacher"""

    def check(self) -> None:
        a, b = self.stage_ends
        if not 0 <= a <= b <= 1:
            raise UserError(f"distill.stage_ends must be two fractions 0 <= a <= b <= 1, got {list(self.stage_ends)}")
        if self.views not in VIEW_MODES:
            raise UserError(f"distill.views must be one of {', '.join(VIEW_MODES)}, got {self.views!r}")
        if self.samples < 1 or self.pool_views < 1 or self.refresh_every < 1 or self.report_views < 1:
            raise UserError("distill.samples, pool_views, refresh_every and report_views must be positive")
        weights = (self.feature_weight, self.sigma_weight, self.color_weight, self.rgb_weight, self.depth_weight,
                   self.alpha_weight)
        if not all(w >= 0 for w in weights):
            raise UserError("the distill loss weights must be >= 0")
