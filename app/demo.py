"""`onefield demo`: the built-in procedural scene -> fit -> eval -> renders + video -> summary."""

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from onefield.fields.hashgrid import HashGridFieldConfig
from onefield.scenes import make_shapes_scene

from .evaluate import evaluate_run, render_run
from .fit import FitJob
from .progress import train_with_progress
from .runs import DataSpec, check_output_folder
from .trainer import TrainerConfig

# Sized for low-resolution images on a CPU: a 2^17 table and a finest level of 512 cells are
# plenty for 100-200 px views and keep Adam's pass over the tables cheap.
DEMO_FIELD = HashGridFieldConfig(log2_table_size=17, max_resolution=512)


def run_demo(out: Path, minutes: float, size: int, views: int, device: str) -> int:
    console = Console(stderr=True)
    start = time.perf_counter()
    trainer = TrainerConfig(minutes=minutes, steps=100_000, eval_every=0, checkpoint_every=1000)
    trainer.check()
    data_dir = check_output_folder(Path(out)) / "data" / "shapes"
    scene = make_shapes_scene(data_dir, n_train=views, n_test=max(views // 4, 1), size=size)
    console.print(f"scene: {scene.n_train} training and {scene.n_test} held-out views at {size}x{size} "
                  f"in {data_dir} (ground-truth mesh {scene.mesh_path.name})")
    job = FitJob.create(DataSpec(str(data_dir)), "hashgrid", DEMO_FIELD, trainer, Path(out), device)
    code = train_with_progress(job, console)
    if code != 0:
        return code
    metrics = evaluate_run(job.run_dir, device)
    outputs = render_run(job.run_dir, n_frames=48, device=device)
    state = job.trainer.state

    table = Table(title="onefield demo")
    table.add_column("what")
    table.add_column("value")
    table.add_row("held-out PSNR (white)", f"{metrics['mean']['psnr']:.2f} dB over {len(metrics['views'])} views")
    table.add_row("held-out SSIM", f"{metrics['mean']['ssim']:.4f}")
    table.add_row("training", f"{state.step} steps, {state.seconds:.0f} s, "
                              f"{state.total_rays / max(state.seconds, 1e-9):,.0f} rays/s")
    table.add_row("render one view", f"{metrics['seconds_per_view'] * 1000:.0f} ms")
    table.add_row("total time", f"{time.perf_counter() - start:.0f} s")
    Console().print(table)
    print(f"run folder:       {job.run_dir.resolve()}")
    print(f"metrics:          {(job.run_dir / 'eval' / 'metrics.json').resolve()}")
    print(f"side-by-sides:    {(job.run_dir / 'eval').resolve()}")
    print(f"held-out renders: {(job.run_dir / 'renders' / 'views').resolve()}")
    print(f"turntable video:  {outputs.video.resolve()}")
    return 0
