"""Small, CPU-fast configurations of every registered backend, shared by the backend tests.
A backend registered without an entry here fails `test_every_backend_has_a_small_config`."""

SMALL = {
    "hashgrid": {"n_levels": 12, "log2_table_size": 15, "max_resolution": 256},
    "tensorf-vm": {"density_rank": 8, "app_rank": 24, "resolution_init": 32, "resolution_final": 96,
                   "upsample_at": (0.1, 0.2, 0.3), "shrink_at": (0.1,)},
    "tensorf-cp": {"density_rank": 32, "app_rank": 96, "resolution_init": 32, "resolution_final": 128,
                   "upsample_at": (0.1, 0.2, 0.3), "shrink_at": (0.1,)},
    "strivec": {"scales": (4, 8), "vector_length": 8, "density_rank": 4, "app_rank": 12, "place_at": 0.1},
    "triplane": {"base_resolution": 16, "scales": (1, 2, 4), "features": 16},
    "finr": {"axis_hidden": 32},
    "mlp": {"depth": 4, "width": 64, "skips": (2,), "position_freqs": 6, "color_width": 32, "lr": 2e-3},
    "splats": {"init_count": 2000, "max_gaussians": 8000, "sh_degree": 1, "sh_degree_every": 200},
}

# Held-out PSNR and marching-cubes F-score at 1% of the diagonal after 600 steps of 4096 samples on the
# 40x40 shapes scene, with space carving (measured 2026-12-02: hashgrid 24.87 dB / 0.70, tensorf-vm 27.83 / 0.85,
# tensorf-cp 25.41 / 0.79, strivec 23.69 / 0.74, triplane 23.34 / 0.67, finr 19.09 / 0.37, mlp 19.34 / 0.38;
# 2026-12-03: splats 26.65-26.74 / 0.80: its CPU backward sums gradients in a thread-dependent order, so it is not
# bit-exact).
# The floors sit 1.1-1.6 dB and 0.1 below (rounded down to 0.5 dB): a CPU run is bit-exact, so the margin
# only absorbs legitimate changes to the recipe, not noise.
PSNR_FLOOR = {"hashgrid": 23.5, "tensorf-vm": 26.5, "tensorf-cp": 24.0, "strivec": 22.5, "triplane": 22.0, "finr": 17.5,
              "mlp": 18.0, "splats": 25.0}
MESH_F_FLOOR = {"hashgrid": 0.59, "tensorf-vm": 0.74, "tensorf-cp": 0.69, "strivec": 0.63, "triplane": 0.56, "finr": 0.26,
                "mlp": 0.27, "splats": 0.69}


def cli_options(name: str) -> list[str]:
    """SMALL[name] as `onefield fit` options (--tensorf-vm.density-rank 8 ...)."""
    options = []
    for key, value in SMALL[name].items():
        values = value if isinstance(value, tuple) else (value,)
        options += [f"--{name}.{key.replace('_', '-')}", *(str(v) for v in values)]
    return options
