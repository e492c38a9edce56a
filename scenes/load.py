"""One entry point for every dataset layout: detect the format, read it, hold out views."""

import re
from pathlib import Path

from onefield.errors import UserError

from .blender import read_blender
from .calibrated import camera_file, read_dtu, read_strecha
from .colmap_scene import find_model, read_colmap_scene
from .dataset import DatasetError, PosedImages
from .llff import read_llff
from .transforms import read_transforms

FORMATS = ("auto", "blender", "transforms", "llff", "colmap", "dtu", "strecha")
HOLD_EVERY = 8  # views 0, 8, 16... are held out where the format has no split (the LLFF protocol)


def detect_format(path: Path) -> str:
    if (path / "transforms_train.json").is_file():
        return "blender"
    if (path / "transforms.json").is_file() or (path.suffix == ".json" and path.is_file()):
        return "transforms"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    if camera_file(path) is not None:
        return "dtu"
    if (path / "gt_dense_cameras").is_dir():
        return "strecha"
    if (path / "images").is_dir():
        try:
            find_model(path)
            return "colmap"
        except DatasetError:
            pass
    if not path.exists():
        raise DatasetError(f"{path}: no such folder.")
    raise DatasetError(f"{path}: no known dataset here. onefield reads a Blender/NeRF-Synthetic folder "
                       "(transforms_train.json), an instant-ngp/nerfstudio transforms.json, an LLFF folder "
                       "(poses_bounds.npy + images_*), a COLMAP project (sparse/0 + images), a DTU scan "
                       "(IDR/NeuS: cameras.npz or cameras_sphere.npz + image/ [+ mask/]; MonoSDF: cameras.npz + "
                       "000000_rgb.png, ...) or a Strecha set (gt_dense_cameras/ + images/).")


def _llff_factor(path: Path, downscale: float) -> int:
    """The most reduced images_<k> folder with k <= downscale (1 for `images`)."""
    factors = [1] if (path / "images").is_dir() else []
    factors += [int(m.group(1)) for p in path.glob("images_*") if (m := re.fullmatch(r"images_(\d+)", p.name))]
    usable = [k for k in factors if k <= downscale]
    if not usable:
        raise DatasetError(f"{path}: no images folder at or below downscale {downscale} "
                           f"(found images_{sorted(factors)}); pass --downscale {min(factors) if factors else 1}.")
    return max(usable)


def load_scene(path: str | Path, format: str = "auto", downscale: float = 1.0,
               eval_split: str = "auto") -> tuple[PosedImages, PosedImages | None, str | None]:
    """(training views, held-out views or None, name of the held-out set).

    eval_split: 'auto' (Blender: test, else val; other formats: every 8th view), a Blender split
    name, 'every8', or 'none'."""
    path = Path(path)
    if format not in FORMATS:
        raise UserError(f"format must be one of {FORMATS}, got {format!r}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "blender":
        train = read_blender(path, "train", downscale)
        split = eval_split
        if split == "auto":
            split = next((s for s in ("test", "val") if (path / f"transforms_{s}.json").is_file()), "none")
        if split == "none":
            return train, None, None
        return train, read_blender(path, split, downscale), split
    if fmt == "transforms":
        views = read_transforms(path, downscale)
    elif fmt == "colmap":
        views = read_colmap_scene(path, downscale=downscale)
    elif fmt == "dtu":
        views = read_dtu(path, downscale=downscale)
    elif fmt == "strecha":
        views = read_strecha(path, downscale=downscale)
    else:
        if not (path / "poses_bounds.npy").is_file():
            raise DatasetError(f"{path}: no poses_bounds.npy, so not an LLFF folder (--format llff); "
                               "pass the folder that holds it, or --format auto")
        factor = _llff_factor(path, downscale)
        views = read_llff(path, factor, downscale / factor)
    if eval_split == "none":
        return views, None, None
    if eval_split not in ("auto", f"every{HOLD_EVERY}"):
        raise UserError(f"{fmt} data has no named splits; eval_split must be 'auto', 'every{HOLD_EVERY}' or 'none'")
    train, held_out = views.split_every(HOLD_EVERY)
    return train, held_out, f"every {HOLD_EVERY}th view"
