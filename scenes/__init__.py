"""Data in: cameras and rays, dataset readers and writers, procedural scenes with known geometry."""

from .blender import MissingFramesWarning, read_blender, write_blender
from .cameras import Cameras, Rays
from .dataset import DatasetError, PosedImages
from .procedural import Ball, ProceduralScene, sphere
from .rays import look_at, orbit_pose
from .shapes import ShapesScene, make_shapes_scene

__all__ = ["Ball", "Cameras", "DatasetError", "MissingFramesWarning", "PosedImages", "ProceduralScene", "Rays",
           "ShapesScene", "look_at", "make_shapes_scene", "orbit_pose", "read_blender", "sphere", "write_blender"]
