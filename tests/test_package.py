import importlib
import subprocess
import sys

import pytest

FOLDERS = ["app", "fields", "renderers", "cuda_ext", "scenes"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_folder_is_a_subpackage(folder):
    module = importlib.import_module(f"onefield.{folder}")
    assert module.__name__ == f"onefield.{folder}"


def test_renderers_never_import_fields():
    code = "import sys, onefield.renderers; print('onefield.fields' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_extension_falls_back_with_one_warning():
    """With the compiled module unavailable, import still works, warns once, and ops run in torch."""
    code = """
import sys, warnings
sys.modules['onefield.cuda_ext._C'] = None  # makes `from . import _C` raise ImportError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import onefield.cuda_ext as ce
    import onefield.renderers
import torch
from onefield.renderers import OccupancyGrid, render_rays
from onefield.scenes import sphere
scene = sphere()
grid = OccupancyGrid(scene.aabb, resolution=8)
o = torch.tensor([[0.0, 0.0, -3.0]]); d = torch.tensor([[0.0, 0.0, 1.0]])
out = render_rays(o, d, grid, scene.rgb_sigma, step_size=0.01)
msgs = [str(w.message) for w in caught if 'native kernels' in str(w.message)]
print(len(msgs), ce.backend_for('cpu'), round(out.opacity.item(), 3))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "torch", "1.0"]
