"""Data in: cameras and rays, procedural scenes with known geometry."""

from .procedural import SCENES, Ball, ProceduralScene, orbs, sphere
from .rays import look_at, orbit_pose, pinhole_rays

__all__ = ["SCENES", "Ball", "ProceduralScene", "look_at", "orbit_pose", "orbs", "pinhole_rays", "sphere"]
