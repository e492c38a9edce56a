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
}

# Held-out PSNR after 600 steps on the 40x40 shapes scene (measured: hashgrid 25.6, tensorf-vm 26.4,
# tensorf-cp 25.5, strivec 25.0, triplane 23.5, finr 17.3, mlp 20.2 dB); the floors leave ~1.5-2 dB for noise.
PSNR_FLOOR = {"hashgrid": 23.5, "tensorf-vm": 24.5, "tensorf-cp": 23.5, "strivec": 23.0, "triplane": 21.5, "finr": 15.5,
              "mlp": 18.5}


def cli_options(name: str) -> list[str]:
    """SMALL[name] as `onefield fit` options (--tensorf-vm.density-rank 8 ...)."""
    options = []
    for key, value in SMALL[name].items():
        values = value if isinstance(value, tuple) else (value,)
        options += [f"--{name}.{key.replace('_', '-')}", *(str(v) for v in values)]
    return options
