"""Splats in and out: the 3DGS PLY layout (what the original code, gsplat, nerfstudio's splatfacto,
SuperSplat and gradio's `Model3D` read and write) and antimatter15's compact `.splat`.

PLY: one `vertex` element, float32 little-endian properties in this order: x y z, nx ny nz (zeros),
f_dc_0..2, f_rest_* channel-major (all red coefficients of the higher bands, then green, then blue),
opacity (a logit), scale_0..2 (logs), rot_0..3 (w x y z, as trained: any norm).

Coordinates are the dataset's own (the frame its cameras were given in), so a PLY trained elsewhere
on the same photos lines up: onefield's frame differs from it by the reader's similarity
(`PosedImages.transform`, x' = s R x + b). A rotation would also turn the SH bands above degree 0,
which is not implemented: such files are written in onefield's frame (`frame="onefield"`).
"""

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from onefield.errors import UserError
from onefield.fields.splats import GaussianSplats, SplatsConfig

from .checkpoint import save_weights
from .runs import DataSpec, RunConfig, build_model, make_trainer, new_run_dir, scene_name
from .trainer import TrainerConfig

SH_C0 = 0.28209479177387814


@dataclass
class Similarity:
    """x' = scale * rotation @ x + shift: the dataset's frame to onefield's."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    shift: np.ndarray  # [3]

    @classmethod
    def of(cls, transform: Tensor | None) -> "Similarity":
        if transform is None:
            return cls(1.0, np.eye(3), np.zeros(3))
        a = transform[:, :3].double().numpy()
        scale = float(np.cbrt(np.linalg.det(a)))
        return cls(scale, a / scale, transform[:, 3].double().numpy())

    @property
    def rotates(self) -> bool:
        return not np.allclose(self.rotation, np.eye(3), atol=1e-6)


def _rotate_quats(rotation: np.ndarray, quats: np.ndarray) -> np.ndarray:
    """The orientation quaternions (w x y z) [N, 4] turned by `rotation` [3, 3]: q' = r q."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_matrix(rotation).as_quat()  # x y z w
    w1, x1, y1, z1 = r[3], r[0], r[1], r[2]
    w2, x2, y2, z2 = quats.T
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], 1)


def parameters(model: GaussianSplats) -> dict[str, np.ndarray]:
    return {name: getattr(model, name).detach().cpu().numpy() for name in GaussianSplats.PARAMETERS}


def mapped(p: dict[str, np.ndarray], frame: Similarity, inverse: bool) -> dict[str, np.ndarray]:
    """Parameters `p` (float32 arrays) mapped out of onefield's frame (inverse) or into it."""
    p = {name: value.astype(np.float64) for name, value in p.items()}
    if inverse:
        p["means"] = (p["means"] - frame.shift) @ frame.rotation / frame.scale
        p["log_scales"] = p["log_scales"] - math.log(frame.scale)
        p["quats"] = _rotate_quats(frame.rotation.T, p["quats"])
    else:
        p["means"] = frame.scale * p["means"] @ frame.rotation.T + frame.shift
        p["log_scales"] = p["log_scales"] + math.log(frame.scale)
        p["quats"] = _rotate_quats(frame.rotation, p["quats"])
    return {k: v.astype(np.float32) for k, v in p.items()}


def _ply_names(n_rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(path: Path, p: dict[str, np.ndarray]) -> None:
    """The 3DGS layout of parameters `p` (GaussianSplats.PARAMETERS as arrays)."""
    n = len(p["means"])
    rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # channel-major
    columns = [p["means"], np.zeros((n, 3), np.float32), p["sh0"].reshape(n, 3), rest, p["opacity_logits"][:, None],
               p["log_scales"], p["quats"]]
    data = np.ascontiguousarray(np.concatenate(columns, 1), dtype="<f4")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in _ply_names(rest.shape[1])] + ["end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())


_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
              "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4",
              "int32": "i4", "uint": "u4", "uint32": "u4"}


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """Parameters (GaussianSplats.PARAMETERS as float32 arrays) of a 3DGS PLY; a file that is not one
    gets a UserError naming what is missing."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read the splat file ({error})") from error
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise UserError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise UserError(f"{path}: only binary little-endian PLY is read (the 3DGS layout); convert it first")
    count, props, element = 0, [], None
    for line in lines:
        words = line.split()
        if words[:1] == ["element"]:
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif not props:
                raise UserError(f"{path}: the vertex element must come first")
        elif words[:1] == ["property"] and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise UserError(f"{path}: vertex property '{line}' is not a 3DGS splat property")
            props.append((words[2], "<" + _PLY_TYPES[words[1]]))
    names = [name for name, _ in props]
    needed = _ply_names(0)
    missing = [name for name in needed if name not in names and name not in ("nx", "ny", "nz")]
    if missing:
        raise UserError(f"{path}: not a Gaussian-splat PLY: no {', '.join(missing)} (the 3DGS layout has x y z, "
                        "f_dc_0..2, f_rest_*, opacity, scale_0..2, rot_0..3)")
    dtype = np.dtype(props)
    body = raw[end + len(b"end_header\n"):]
    if len(body) < count * dtype.itemsize:
        raise UserError(f"{path}: truncated: {count} splats need {count * dtype.itemsize} bytes, the file has {len(body)}")
    v = np.frombuffer(body, dtype, count)
    n_rest = sum(name.startswith("f_rest_") for name in names)
    k = n_rest // 3 + 1
    if n_rest % 3 or round(math.sqrt(k)) ** 2 != k or k > 16:
        raise UserError(f"{path}: {n_rest} f_rest properties fit no SH degree 0-3 (0, 9, 24 or 45)")

    def cols(*keys: str) -> np.ndarray:
        return np.stack([v[key].astype(np.float32) for key in keys], 1)

    rest = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else np.zeros((count, 0), np.float32)
    p = {"means": cols("x", "y", "z"), "log_scales": cols("scale_0", "scale_1", "scale_2"),
         "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"), "opacity_logits": v["opacity"].astype(np.float32),
         "sh0": cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None], "shN": rest.reshape(count, 3, k - 1).transpose(0, 2, 1)}
    if not all(np.isfinite(a).all() for a in p.values()):
        raise UserError(f"{path}: holds NaN or infinite values")
    return p


def write_splat(path: Path, p: dict[str, np.ndarray]) -> None:
    """antimatter15's .splat: per Gaussian 3 float32 position, 3 float32 scale, RGBA uint8, quaternion
    uint8 x4 (w x y z, (q + 1) * 128), the most visible first (scale volume x opacity)."""
    opacity = 1 / (1 + np.exp(-p["opacity_logits"]))
    scales = np.exp(p["log_scales"])
    order = np.argsort(-(scales.prod(1) * opacity))
    rgb = 0.5 + SH_C0 * p["sh0"].reshape(-1, 3)
    rgba = np.clip(np.concatenate([rgb, opacity[:, None]], 1) * 255, 0, 255).round().astype(np.uint8)
    q = p["quats"] / np.linalg.norm(p["quats"], axis=1, keepdims=True).clip(min=1e-12)
    quats = np.clip(q * 128 + 128, 0, 255).astype(np.uint8)
    record = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    out = np.empty(len(order), record)
    out["pos"], out["scale"], out["rgba"], out["rot"] = p["means"][order], scales[order], rgba[order], quats[order]
    Path(path).write_bytes(out.tobytes())


def export_splats(run_dir: Path, fmt: Literal["ply", "splat"] = "ply", out: Path | None = None,
                  frame: Literal["dataset", "onefield"] = "dataset") -> tuple[Path, int]:
    """Write a splat run's Gaussians (`<run>/exports/splats.<fmt>` by default); returns (path, count)."""
    from .evaluate import run_renderer

    run_dir = Path(run_dir)
    config, trainer, train, *_ = run_renderer(run_dir, "cpu")
    if not isinstance(trainer.model, GaussianSplats):
        raise UserError(f"{run_dir}: a {config.field} run has no Gaussians; `onefield export splats` takes a splats run "
                        "(convert a volume with `--splats.init-from RUN`)")
    similarity = Similarity.of(train.transform if frame == "dataset" else None)
    if similarity.rotates and trainer.model.config.sh_degree > 0:
        raise UserError(f"{config.data.path}: the reader rotated this dataset's frame, and rotating SH bands is not "
                        "implemented; export with --frame onefield (onefield's own coordinates)")
    p = mapped(parameters(trainer.model), similarity, inverse=True)
    path = Path(out) if out is not None else run_dir / "exports" / f"splats.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    (write_ply if fmt == "ply" else write_splat)(path, p)
    return path, len(p["means"])


def import_splats(ply: Path, data: DataSpec, out: Path = Path("runs"), frame: Literal["dataset", "onefield"] = "dataset",
                  device: str = "cpu") -> Path:
    """A run folder around a 3DGS PLY trained elsewhere on `data`'s photos: `eval`, `render` and
    `export` take it like a fitted run (its checkpoint holds the Gaussians, at step 0)."""
    p = read_ply(Path(ply))
    data = replace(data, undistort=True)  # as a splat fit loads it (`GaussianSplats.pinhole_only`)
    train, held_out, _ = data.load()
    degree = round(math.sqrt(p["shN"].shape[1] + 1)) - 1
    similarity = Similarity.of(train.transform if frame == "dataset" else None)
    if similarity.rotates and degree > 0:
        raise UserError(f"{data.path}: the reader rotates this dataset's frame, and rotating SH bands is not "
                        "implemented; import with --frame onefield if the file is in onefield's coordinates")
    trainer_config = TrainerConfig().resolved(train, "splats")
    config = RunConfig(scene_name(data.path), data, "splats", asdict(SplatsConfig(sh_degree=degree)), list(train.aabb),
                       trainer_config.grid_resolution, asdict(trainer_config), device, train.cascades)
    model, grid = build_model(config, device)
    ours = mapped(p, similarity, inverse=False)
    model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in ours.items()} | {"aabb": model.aabb})
    trainer = make_trainer(model, grid, train, trainer_config, held_out, device)
    trainer.refresh_grid()
    run_dir = new_run_dir(out, config.scene, "splats")
    config.save(run_dir)
    (run_dir / "imported.json").write_text(json.dumps({"ply": str(Path(ply).resolve()), "gaussians": len(model),
                                                       "sh_degree": degree, "frame": frame}, indent=1))
    save_weights(run_dir, trainer)
    return run_dir
