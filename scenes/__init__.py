"""Data in: cameras and rays, dataset readers and writers, procedural scenes with known geometry."""

from .blender import read_blender, write_blender
from .frames import MissingFramesWarning
from .cameras import Cameras, Rays
from .dataset import DatasetError, PosedImages
from .llff import read_llff
from .load import detect_format, load_scene
from .procedural import Ball, ProceduralScene, sphere
from .rays import look_at, orbit_pose
from .shapes import ShapesScene, make_shapes_scene, make_unbounded_scene
from .transforms import read_transforms

__all__ = ["Ball", "Cameras", "DatasetError", "MissingFramesWarning", "PosedImages", "ProceduralScene", "Rays",
           "ShapesScene", "detect_format", "load_scene", "look_at", "make_shapes_scene", "make_unbounded_scene", "orbit_pose", "read_blender",
           "read_llff", "read_transforms", "sphere", "write_blender"]
