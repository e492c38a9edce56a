"""Options of `onefield export mesh` (kept apart from the exporter so the CLI loads without open3d)."""

from dataclasses import dataclass, field

from onefield.errors import UserError

METHODS = ("mc", "tsdf", "poisson")
FORMATS = ("ply", "obj", "glb")
COLORINGS = ("normal", "views", "none")


@dataclass
class CleanupConfig:
    min_component: float = 0.02
    """drop connected components with fewer faces than this fraction of the largest one (floaters; 0: keep all)"""
    smooth: int = 0
    """Taubin smoothing iterations (volume-preserving; 0: none)"""
    faces: int = 300_000
    """decimate to at most this many faces by quadric error (0: keep every face); a 256^3 marching-cubes
    mesh has ~0.8 M, far more than its detail needs"""


@dataclass
class MeshExportConfig:
    method: str = "mc"
    """mc (marching cubes on the density), tsdf (fused rendered depth) or poisson (screened Poisson on
    back-projected depth)"""
    resolution: int = 256
    """mc: lattice points along the longest side of the occupied box; tsdf: voxels along it"""
    level: float | None = None
    """mc: density iso-level (default: the lower decile of the density at the rendered depth of opaque training rays)"""
    fill_hidden: bool = True
    """mc: make solid every low-density point that no training view sees as empty space (the inside
    of an object, which nothing trains; unfilled, its pockets become inner sheets)"""
    views: str = "train"
    """tsdf / poisson: render depth from the 'train' cameras or from a 'sphere' of views around the box"""
    n_views: int = 100
    """views on the sphere (views 'sphere')"""
    min_opacity: float = 0.5
    """tsdf / poisson: pixels less opaque than this carry no depth"""
    poisson_depth: int = 9
    """poisson: octree depth"""
    trim: float = 0.05
    """poisson: drop vertices in this lowest quantile of point support"""
    colors: str = "normal"
    """vertex colours: 'normal' (the field rendered looking along each vertex normal), 'views' (the
    training photos, averaged over the views that see the vertex) or 'none'"""
    texture: int = 0
    """bake a UV texture atlas of this size in pixels (xatlas; OBJ or GLB; 0: vertex colours only)"""
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    format: str = "ply"
    """ply, obj or glb"""

    def check(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("format", self.format, FORMATS),
                                     ("colors", self.colors, COLORINGS), ("views", self.views, ("train", "sphere"))):
            if value not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.texture and self.format == "ply":
            raise UserError("a texture atlas needs --format obj or glb (PLY stores vertex colours only)")
        if not 16 <= self.resolution <= 1024:
            raise UserError(f"--resolution must be in [16, 1024], got {self.resolution}")
