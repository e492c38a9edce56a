"""Build and install onefield.

Each top-level folder is the package ``onefield.<folder>`` (``package_dir``), so nothing generic
lands in site-packages. The native extension ``onefield.cuda_ext._C`` is always built from the
CPU sources; the CUDA sources are added only when torch has CUDA, a toolkit is found and
``ONEFIELD_NO_CUDA`` is unset. Install with ``pip install --no-build-isolation -e .`` so the
extension is compiled against the torch that will load it.
"""

import glob
import os

from setuptools import setup
from torch.utils import cpp_extension

FOLDERS = ("app", "fields", "renderers", "cuda_ext", "scenes")
CSRC = "cuda_ext/csrc"
# The C++ standard is left to torch (2.13 builds with C++17, 2.14 requires C++20).
# -ffp-contract=off / --fmad=false: no fused multiply-add, so the kernels round exactly like the
# torch reference (tests compare sample positions bit for bit).
CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off"]
NVCC_FLAGS = ["-O3", "--fmad=false", "--expt-relaxed-constexpr"]


def packages() -> dict[str, str]:
    """Map every package (a folder with __init__.py) under the top-level folders to its path."""
    mapping = {"onefield": "onefield"}
    for folder in FOLDERS:
        for root, _, files in os.walk(folder):
            if "__init__.py" in files:
                mapping["onefield." + root.replace(os.sep, ".")] = root
    return mapping


def build_cuda() -> bool:
    if os.environ.get("ONEFIELD_NO_CUDA", "") not in ("", "0"):
        return False
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension():
    sources = sorted(glob.glob(f"{CSRC}/*.cpp"))
    if build_cuda():
        return cpp_extension.CUDAExtension(
            "onefield.cuda_ext._C",
            sources + sorted(glob.glob(f"{CSRC}/*.cu")),
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "onefield.cuda_ext._C",
        sources,
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )


mapping = packages()
setup(
    name="onefield",
    version="0.1.0",
    description="Neural fields: fit, view, convert and mesh scenes with one engine",
    python_requires=">=3.10",
    packages=list(mapping),
    package_dir=mapping,
    install_requires=["torch>=2.4",  # 2.4: the fused Adam the trainer uses on a CPU
                       "numpy", "imageio>=2.30", "imageio-ffmpeg", "pillow", "rich", "tyro>=1.0",
                      "safetensors", "open3d-cpu>=0.19", "pycolmap>=4.2", "scipy", "scikit-image", "trimesh>=4.0",
                      "xatlas"],
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    entry_points={"console_scripts": ["onefield = onefield.app.cli:main"]},
)
