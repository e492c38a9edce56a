"""A dataset in 3D for the GUI's Data page: camera centres and frustums, the scene box and, when
the dataset has a COLMAP model, its sparse points coloured by their RGB, all in the coordinates
onefield trains in (the readers' normalisation, OpenCV cameras). A plotly figure object only
(gradio's gr.Plot draws it), so nothing is fetched from the internet.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from onefield.scenes import Cameras, DatasetError, detect_format, load_scene
from onefield.scenes.colmap import read_model
from onefield.scenes.colmap_scene import find_model

# The readers decode every image whatever the downscale (there is no camera-only path), but a high
# one keeps the cached copy and the tensor held in memory small; only the cameras are drawn.
DOWNSCALE = 8
FRUSTUM_DEPTH = 0.08  # frustum depth as a fraction of the extent of the cameras and the box
BOX_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


@dataclass
class SceneGeometry:
    """What the plot shows, in onefield's coordinates; read once, then drawn and summarised."""

    format: str
    cameras: Cameras  # at DOWNSCALE
    names: list[str]
    aabb: tuple[float, float, float, float, float, float]
    cascades: int
    points: np.ndarray | None  # [P, 3] sparse points inside the scene's outermost cascade; None: no model
    colors: np.ndarray | None  # [P, 3] uint8
    point_ids: np.ndarray | None  # [P] COLMAP point ids
    track_lengths: np.ndarray | None  # [P] how many images see each point


def _model_transform(path: Path, fmt: str, reader_transform: np.ndarray | None) -> np.ndarray | None:
    """[3, 4] source world -> ours (x' = A x + b) that the reader applied, or None when unknown."""
    if reader_transform is not None:  # colmap and llff readers say what they did
        return reader_transform
    if fmt == "transforms":
        # process, import_colmap_model and nerfstudio record the map from the COLMAP world to the file's poses
        json_path = path if path.is_file() else path / "transforms.json"
        applied = json.loads(json_path.read_text()).get("applied_transform")
        if applied is not None:
            return np.asarray(applied, dtype=np.float64)[:3, :4]
    return None


def read_geometry(dataset: str | Path) -> SceneGeometry:
    """Cameras (every view, held-out ones included; Blender: the train split), box and sparse points."""
    path = Path(dataset)
    fmt = detect_format(path)
    views, _, _ = load_scene(path, "auto", DOWNSCALE, "none")
    points = colors = ids = tracks = None
    root = path.parent if path.is_file() else path
    reader_transform = None if views.transform is None else views.transform.double().numpy()
    transform = _model_transform(path, fmt, reader_transform)
    if transform is not None:
        try:
            model = read_model(find_model(root), require=("points3D",))
        except DatasetError:
            model = None
        if model is not None and model.points:
            raw = list(model.points.values())
            xyz = np.stack([p.xyz for p in raw]) @ transform[:, :3].T + transform[:, 3]  # [P, 3]
            lo, hi = np.array(views.aabb[:3]), np.array(views.aabb[3:])
            centre, half = (lo + hi) / 2, (hi - lo) / 2 * 2 ** (views.cascades - 1)
            # stray points far outside what the field models would only shrink the plot
            keep = np.all(np.abs(xyz - centre) <= half, axis=1)  # [P]
            points, colors = xyz[keep], np.stack([p.rgb for p in raw])[keep]
            ids = np.array([p.id for p in raw])[keep]
            tracks = np.array([len(p.image_ids) for p in raw])[keep]
    return SceneGeometry(fmt, views.cameras, views.names, views.aabb, views.cascades, points, colors, ids, tracks)


def _segments(starts: np.ndarray, ends: np.ndarray) -> tuple[list, list, list]:
    """Line segments [S, 3] -> x, y, z lists for one Scatter3d, None between segments."""
    xyz: list[list] = [[], [], []]
    for a, b in zip(starts, ends):
        for axis in range(3):
            xyz[axis] += [float(a[axis]), float(b[axis]), None]
    return xyz[0], xyz[1], xyz[2]


def _frustums(cameras: Cameras, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points [N * 10, 3] of each camera's pyramid to the image corners at `depth`
    (the lens's distortion ignored) and a small triangle on the image's top edge, to show up."""
    w, h = cameras.width, cameras.height
    u = np.array([0.0, w, w, 0.0, 0.3 * w, 0.5 * w, 0.7 * w])
    v = np.array([0.0, 0.0, h, h, 0.0, -0.2 * h, 0.0])  # corners clockwise from top-left, then the triangle
    c2w = cameras.c2w.double().numpy()  # [N, 3, 4]
    fx, fy = cameras.fx.double().numpy()[:, None], cameras.fy.double().numpy()[:, None]
    cx, cy = cameras.cx.double().numpy()[:, None], cameras.cy.double().numpy()[:, None]
    local = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones((len(c2w), len(u)))], -1) * depth  # [N, 7, 3]
    world = np.einsum("nij,nkj->nki", c2w[:, :, :3], local) + c2w[:, None, :, 3]  # [N, 7, 3]
    apex = np.repeat(c2w[:, None, :, 3], 4, 1)  # [N, 4, 3]
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6)]
    starts = np.concatenate([apex, world[:, [a for a, _ in pairs]]], 1)  # [N, 10, 3]
    ends = np.concatenate([world[:, :4], world[:, [b for _, b in pairs]]], 1)
    return starts.reshape(-1, 3), ends.reshape(-1, 3)


def _box_corners(aabb: tuple[float, ...]) -> np.ndarray:
    """[8, 3] corners, index bits (x, y, z) = (1, 2, 4)."""
    lo, hi = np.array(aabb[:3]), np.array(aabb[3:])
    return np.array([[(hi if i & bit else lo)[axis] for axis, bit in enumerate((1, 2, 4))] for i in range(8)])


def scene_figure(dataset: str | Path | SceneGeometry, max_points: int = 20000) -> go.Figure:
    """The dataset's cameras, scene box and sparse points (at most `max_points`, a fixed random subset)."""
    geo = dataset if isinstance(dataset, SceneGeometry) else read_geometry(dataset)
    centres = geo.cameras.c2w[:, :, 3].double().numpy()  # [N, 3]
    corners = _box_corners(geo.aabb)
    extent = float(np.ptp(np.concatenate([centres, corners]), axis=0).max())
    traces = []
    if geo.points is not None and len(geo.points):
        keep = np.arange(len(geo.points))
        if len(keep) > max_points:
            keep = np.sort(np.random.default_rng(0).choice(len(keep), max_points, replace=False))
        p, rgb = geo.points[keep], geo.colors[keep]
        traces.append(go.Scatter3d(
            x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=f"sparse points ({len(geo.points)})",
            marker=dict(size=1.5, color=[f"rgb({r},{g},{b})" for r, g, b in rgb.tolist()]),
            customdata=np.stack([geo.point_ids[keep], geo.track_lengths[keep]], -1),
            hovertemplate="point %{customdata[0]}<br>seen in %{customdata[1]} images<extra></extra>"))
    box_x, box_y, box_z = _segments(*(corners[[e[i] for e in BOX_EDGES]] for i in (0, 1)))
    traces.append(go.Scatter3d(x=box_x, y=box_y, z=box_z, mode="lines", name="scene box",
                               line=dict(color="#2ca02c", width=3), hoverinfo="skip"))
    fr_x, fr_y, fr_z = _segments(*_frustums(geo.cameras, FRUSTUM_DEPTH * extent))
    traces.append(go.Scatter3d(x=fr_x, y=fr_y, z=fr_z, mode="lines", name="frustums",
                               line=dict(color="#d62728", width=2), hoverinfo="skip"))
    traces.append(go.Scatter3d(x=centres[:, 0], y=centres[:, 1], z=centres[:, 2], mode="markers",
                               name=f"cameras ({len(centres)})", marker=dict(size=3, color="#d62728"),
                               text=geo.names, hovertemplate="%{text}<extra></extra>"))
    # OpenCV cameras look along +z with -y up: their mean up shows the scene upright
    up = -geo.cameras.c2w[:, :, 1].double().mean(0).numpy()
    up = up / max(float(np.linalg.norm(up)), 1e-9)
    figure = go.Figure(traces)
    figure.update_layout(
        margin=dict(l=0, r=0, t=0, b=0), height=520, legend=dict(x=0, y=1, font=dict(size=11)),
        scene=dict(aspectmode="data", camera=dict(up=dict(zip("xyz", up.tolist()))),
                   xaxis_title="x", yaxis_title="y", zaxis_title="z"))
    return figure


def scene_summary(dataset: str | Path | SceneGeometry) -> dict:
    """Counts and sizes for the Data page. `image_size` is the full resolution recovered from the
    DOWNSCALE copy: exact when the sides divide by it, else within DOWNSCALE / 2 pixels."""
    geo = dataset if isinstance(dataset, SceneGeometry) else read_geometry(dataset)
    return {"format": geo.format, "cameras": len(geo.names),
            "image_size": (round(geo.cameras.width * DOWNSCALE), round(geo.cameras.height * DOWNSCALE)),
            "points": 0 if geo.points is None else len(geo.points), "box": list(geo.aabb), "cascades": geo.cascades}
