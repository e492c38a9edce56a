# onefield: `make demo` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch is pinned in the same pip call as everything else, so nothing can pull a CUDA build.
TORCH := torch==2.13.0
DEPS := numpy==2.4.6 imageio==2.38.1 imageio-ffmpeg==0.8.1 pillow==12.3.0 ninja==1.13.2 setuptools==84.2.1 \
        pytest==9.2.0 nerfacc==0.5.3 rich==15.0.0 tyro==1.0.17 safetensors==0.8.0 scikit-image==0.26.0 \
        open3d-cpu==0.19.0 pycolmap==4.2.1 scipy==1.17.1 trimesh==4.12.2 xatlas==0.0.11 \
        gradio==6.31.0 gradio_client==2.7.2 pandas==2.3.3 plotly==7.1.0 playwright==1.65.2 \
        gsplat==1.5.3 jaxtyping==0.3.11 wadler_lindig==0.1.8 ray==2.60.0 pyyaml==6.0.4
STAMP := $(VENV)/.onefield-installed
CSRC := $(wildcard cuda_ext/csrc/*)
# CUDA compile check (no GPU needed): a CUDA build of torch in a cached venv outside the repo.
CUDA_VENV ?= $(HOME)/.cache/onefield/cuda-venv
CUDA_TORCH := torch==2.14.1
CUDA_ARCHS ?= 8.0;9.0
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

# The browser tests drive Debian's chromium (playwright cannot download browsers here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WORKSPACE ?= workspace

.PHONY: setup browser demo gui test bench cuda-check clean

setup: $(STAMP)

$(STAMP): setup.py Makefile $(CSRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH) $(DEPS)
	MAX_JOBS=2 $(PIP) install -q --no-build-isolation -e .
	$(PY) -c "import onefield.cuda_ext as c; assert c.native is not None, c.LOAD_ERROR"
	touch $@

browser:
	test -x $(CHROMIUM) || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

demo: setup
	$(VENV)/bin/onefield info
	$(VENV)/bin/onefield demo --out runs/demo

gui: setup
	$(VENV)/bin/onefield gui --workspace $(WORKSPACE)

test: setup browser
	$(PY) -m pytest -q -rs -p no:dash --durations=25 tests

bench: setup
	$(PY) benchmarks/bench_march_render.py
	$(PY) benchmarks/bench_hashgrid.py
	$(PY) benchmarks/bench_factors.py

# Compiles every .cu source for sm_80/sm_90 against torch 2.14.1 (CUDA 13.0) into a throwaway
# folder. The `nvcc` on PATH is a wrapper: CUDA_HOME comes from its real toolkit root.
cuda-check:
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -c "import torch" 2>/dev/null || \
	  $(CUDA_VENV)/bin/python -m pip install -q $(CUDA_TORCH) numpy ninja setuptools
	tmp=$$(mktemp -d) && \
	export CUDA_HOME=$$(realpath "$$(nvcc --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^#\$$ TOP=//p')") && \
	TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" MAX_JOBS=2 \
	  $(CUDA_VENV)/bin/python setup.py -q build_ext --build-temp $$tmp/build --build-lib $$tmp/lib && \
	ls $$tmp/lib/onefield/cuda_ext/_C*.so && \
	$(CUDA_VENV)/bin/python -c "import sys; sys.path.insert(0, '$$tmp/lib'); import torch; \
	  from onefield.cuda_ext import _C; assert _C.has_cuda(); print('CUDA build OK:', _C.__file__)" && \
	rm -rf $$tmp

clean:
	rm -rf build *.egg-info cuda_ext/_C*.so $(VENV) runs $(WORKSPACE)
