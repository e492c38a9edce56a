"""COLMAP sparse models, binary and text, read and written (cameras, images, points3D).

Layouts follow COLMAP's `src/colmap/scene/reconstruction_io.cc`: little-endian, `uint64` counts,
`int32` camera/image ids, `uint64` point ids; poses are world-to-camera (qw qx qy qz, tx ty tz) in
OpenCV axes, so `Cameras` (also OpenCV) takes them after an inversion only.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .dataset import DatasetError

# model id -> (name, number of parameters)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [P] float64, COLMAP's order for `model`


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # [4] world-to-camera rotation (w, x, y, z)
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [K, 2] keypoints
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [K], -1: none

    def rotation(self) -> np.ndarray:
        """World-to-camera rotation matrix [3, 3]."""
        w, x, y, z = self.qvec / np.linalg.norm(self.qvec)
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])

    def c2w(self) -> np.ndarray:
        """Camera-to-world [3, 4] in OpenCV axes."""
        r = self.rotation()
        return np.concatenate([r.T, (-r.T @ self.tvec)[:, None]], 1)


@dataclass
class ColmapPoint:
    id: int
    xyz: np.ndarray  # [3]
    rgb: np.ndarray  # [3] uint8
    error: float
    image_ids: np.ndarray  # [T] int32
    point2D_idxs: np.ndarray  # [T] int32


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: dict[int, ColmapPoint]


def rotation_to_qvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion (w, x, y, z) with w >= 0."""
    m = r
    trace = np.trace(m)
    if trace > 0:
        s = 0.5 / np.sqrt(trace + 1.0)
        q = np.array([0.25 / s, (m[2, 1] - m[1, 2]) * s, (m[0, 2] - m[2, 0]) * s, (m[1, 0] - m[0, 1]) * s])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.empty(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


# ---- binary -------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path

    def block(self, size: int) -> bytes:
        data = self.f.read(size)
        if len(data) != size:
            raise DatasetError(f"{self.path}: file ends early (truncated or not a COLMAP binary file). "
                               "Re-export the model from COLMAP.")
        return data

    def read(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.block(struct.calcsize("<" + fmt)))

    def name(self) -> str:
        chars = bytearray()
        while (c := self.f.read(1)) not in (b"\x00", b""):
            chars += c
        if c == b"":
            raise DatasetError(f"{self.path}: image name not terminated (truncated file).")
        return chars.decode("utf-8")


def _camera_model(path: Path, model_id: int | str) -> tuple[str, int]:
    if isinstance(model_id, int):
        if model_id not in CAMERA_MODELS:
            raise DatasetError(f"{path}: unknown camera model id {model_id}.")
        return CAMERA_MODELS[model_id]
    if model_id not in MODEL_IDS:
        raise DatasetError(f"{path}: unknown camera model {model_id!r}; COLMAP models: {', '.join(MODEL_IDS)}.")
    return model_id, MODEL_IDS[model_id][1]


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        for _ in range(r.read("Q")[0]):
            cid, mid, width, height = r.read("iiQQ")
            name, n = _camera_model(path, mid)
            cameras[cid] = ColmapCamera(cid, name, width, height, np.array(r.read("d" * n)))
    return cameras


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        for _ in range(r.read("Q")[0]):
            iid, *pose, cid = r.read("i7di")
            name = r.name()
            k = r.read("Q")[0]
            pts = np.frombuffer(r.block(24 * k), dtype=np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]))
            images[iid] = ColmapImage(iid, np.array(pose[:4]), np.array(pose[4:]), cid, name,
                                      np.stack([pts["x"], pts["y"]], -1), pts["id"].astype(np.int64))
    return images


def read_points3D_bin(path: Path) -> dict[int, ColmapPoint]:
    points = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        for _ in range(r.read("Q")[0]):
            pid, x, y, z, red, green, blue, error, t = r.read("Q3d3BdQ")
            track = np.frombuffer(r.block(8 * t), dtype="<i4")
            points[pid] = ColmapPoint(pid, np.array([x, y, z]), np.array([red, green, blue], dtype=np.uint8), error,
                                      track[0::2].copy(), track[1::2].copy())
    return points


def write_cameras_bin(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(cameras)))
        for c in cameras.values():
            mid, n = MODEL_IDS[c.model]
            f.write(struct.pack("<iiQQ", c.id, mid, c.width, c.height))
            f.write(struct.pack("<" + "d" * n, *c.params))


def write_images_bin(path: Path, images: dict[int, ColmapImage]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for im in images.values():
            f.write(struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id))
            f.write(im.name.encode("utf-8") + b"\x00")
            f.write(struct.pack("<Q", len(im.point3D_ids)))
            for (x, y), pid in zip(im.xys, im.point3D_ids):
                f.write(struct.pack("<ddq", x, y, pid))


def write_points3D_bin(path: Path, points: dict[int, ColmapPoint]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for p in points.values():
            f.write(struct.pack("<Q3d3BdQ", p.id, *p.xyz, *p.rgb.tolist(), p.error, len(p.image_ids)))
            track = np.stack([p.image_ids, p.point2D_idxs], -1).astype("<i4")
            f.write(track.tobytes())


# ---- text ---------------------------------------------------------------------------------------
def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield number, line.split()


def _parse_error(path: Path, number: int, what: str, error: Exception) -> DatasetError:
    return DatasetError(f"{path}:{number}: cannot parse {what} ({error}). Fix the line or re-export the model.")


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, items in _lines(path):
        try:
            name, n = _camera_model(path, items[1])
            cid = int(items[0])
            cameras[cid] = ColmapCamera(cid, name, int(items[2]), int(items[3]),
                                        np.array([float(v) for v in items[4:4 + n]]))
            if len(items) != 4 + n:
                raise ValueError(f"{name} takes {n} parameters, the line has {len(items) - 4}")
        except (ValueError, IndexError) as error:
            raise _parse_error(path, number, "a camera", error) from error
    return cameras


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    images = {}
    with open(path) as f:
        raw = [(n, line.rstrip("\n")) for n, line in enumerate(f, 1) if not line.startswith("#")]
    # each image is two lines: the pose line and its (possibly empty) keypoint line
    for (number, head), (_, points) in zip(raw[0::2], raw[1::2] + [(0, "")] * (len(raw) % 2)):
        items = head.split()
        if not items:
            continue
        try:
            iid, cid = int(items[0]), int(items[8])
            values = np.array([float(v) for v in points.split()]).reshape(-1, 3)
            images[iid] = ColmapImage(iid, np.array([float(v) for v in items[1:5]]),
                                      np.array([float(v) for v in items[5:8]]), cid, " ".join(items[9:]),
                                      values[:, :2], values[:, 2].astype(np.int64))
        except (ValueError, IndexError) as error:
            raise _parse_error(path, number, "an image", error) from error
    return images


def read_points3D_txt(path: Path) -> dict[int, ColmapPoint]:
    points = {}
    for number, items in _lines(path):
        try:
            pid = int(items[0])
            track = np.array([int(v) for v in items[8:]], dtype=np.int32)
            points[pid] = ColmapPoint(pid, np.array([float(v) for v in items[1:4]]),
                                      np.array([int(v) for v in items[4:7]], dtype=np.uint8), float(items[7]),
                                      track[0::2].copy(), track[1::2].copy())
        except (ValueError, IndexError) as error:
            raise _parse_error(path, number, "a 3D point", error) from error
    return points


def write_cameras_txt(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [" ".join([str(c.id), c.model, str(c.width), str(c.height), *map(repr, c.params.tolist())])
              for c in cameras.values()]
    path.write_text("\n".join(lines) + "\n")


def write_images_txt(path: Path, images: dict[int, ColmapImage]) -> None:
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for im in images.values():
        lines.append(" ".join([str(im.id), *map(repr, [*im.qvec.tolist(), *im.tvec.tolist()]), str(im.camera_id), im.name]))
        lines.append(" ".join(f"{x!r} {y!r} {int(p)}" for (x, y), p in zip(im.xys.tolist(), im.point3D_ids)))
    path.write_text("\n".join(lines) + "\n")


def write_points3D_txt(path: Path, points: dict[int, ColmapPoint]) -> None:
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for p in points.values():
        track = " ".join(f"{i} {j}" for i, j in zip(p.image_ids.tolist(), p.point2D_idxs.tolist()))
        lines.append(" ".join([str(p.id), *map(repr, p.xyz.tolist()), *map(str, p.rgb.tolist()), repr(p.error), track]).rstrip())
    path.write_text("\n".join(lines) + "\n")


# ---- models -------------------------------------------------------------------------------------
_READERS = {".bin": (read_cameras_bin, read_images_bin, read_points3D_bin),
            ".txt": (read_cameras_txt, read_images_txt, read_points3D_txt)}
_WRITERS = {".bin": (write_cameras_bin, write_images_bin, write_points3D_bin),
            ".txt": (write_cameras_txt, write_images_txt, write_points3D_txt)}


def model_format(folder: Path) -> str:
    """'.bin' or '.txt', whichever cameras file the folder has (binary first, as COLMAP does)."""
    for ext in (".bin", ".txt"):
        if (folder / f"cameras{ext}").is_file():
            return ext
    raise DatasetError(f"{folder}: no COLMAP model here (no cameras.bin or cameras.txt). Point to the sparse "
                       "model folder, e.g. colmap/sparse/0.")


def read_model(folder: str | Path, require: tuple[str, ...] = ("cameras", "images", "points3D")) -> ColmapModel:
    """Read a sparse model folder; files not in `require` may be missing (read as empty)."""
    folder = Path(folder)
    ext = model_format(folder)
    parts = []
    for name, reader in zip(("cameras", "images", "points3D"), _READERS[ext]):
        path = folder / f"{name}{ext}"
        if path.is_file():
            parts.append(reader(path))
        elif name in require:
            raise DatasetError(f"{path}: missing from the COLMAP model; a model needs cameras, images and points3D.")
        else:
            parts.append({})
    return ColmapModel(*parts)


def write_model(folder: str | Path, model: ColmapModel, ext: str = ".bin") -> Path:
    if ext not in _WRITERS:
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, writer, part in zip(("cameras", "images", "points3D"), _WRITERS[ext],
                                  (model.cameras, model.images, model.points)):
        writer(folder / f"{name}{ext}", part)
    return folder
