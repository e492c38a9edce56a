"""How a field becomes pixels: occupancy grid, ray marching, volume rendering; and Gaussian splats
(`splatting.py`: SH colour, projection, tile rasterization).

Field-agnostic: everything takes callables (`sigma_fn(x) -> sigma`, `rgb_sigma_fn(x, d) ->
(rgb, sigma)`, or a `Deferred` pair for fields whose colour is costly) and never imports
`onefield.fields`.
"""

from .image import render_image, render_rays
from .marching import RaySamples, march
from .occupancy import OccupancyGrid
from .volume import Deferred, RenderResult, march_visible, render

__all__ = ["Deferred", "OccupancyGrid", "RaySamples", "RenderResult", "march", "march_visible", "render", "render_image",
           "render_rays"]
