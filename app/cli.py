"""The `onefield` command line: dataclass configs turned into options by tyro.

Backends come from the registry: `fit` gets the options of the one backend it is asked for
(`--field NAME`, then `--<name>.<option>` from its config dataclass), so adding a backend touches
no file here, and a backend whose module cannot be imported breaks only `--field` of that name.
"""

import inspect
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from onefield import fields
from onefield.errors import UserError
from onefield.scenes.load import FORMATS
from onefield.scenes.sfm import ProcessConfig

from .distill_config import DistillConfig
from .mesh_config import MeshExportConfig
from .info import format_info, machine_info
from .trainer import TrainerConfig, TrainingDiverged

Positional = tyro.conf.Positional
USER_ERRORS = (UserError, TrainingDiverged)
DEFAULT_FIELD = "hashgrid"


def _fail(command: str, error: BaseException) -> int:
    print(f"onefield {command}: {error}", file=sys.stderr)
    return 2


def _show_warnings() -> None:
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def info() -> int:
    """Print versions, devices, which kernel implementations are active and the field backends."""
    print(format_info(machine_info()))
    print("field backends:")
    for name in fields.names():
        error = fields.registry.import_error(name)
        print(f"  field {name:<11} {fields.registry.summary(name) if error is None else 'unavailable: ' + error}")
    return 0


def _fit(data: Path, field: str, steps: int | None, minutes: float | None, downscale: float, out: Path,
         device: str, format: str, eval_split: str, aabb: tuple[float, ...] | None, near: float | None,
         far: float | None, cascades: int | None, trainer: TrainerConfig, field_config: Any = None) -> int:
    from .fit import FitJob
    from .progress import train_with_progress
    from .runs import DataSpec

    _show_warnings()
    try:
        trainer = replace(trainer, steps=steps or trainer.steps, minutes=minutes if minutes is not None else trainer.minutes)
        spec = DataSpec(str(data), downscale, eval_split, format, aabb=aabb, near=near, far=far, cascades=cascades)
        job = FitJob.create(spec, field, field_config, trainer, out, device)
    except USER_ERRORS as error:
        return _fail("fit", error)
    return train_with_progress(job)


_FIT_DOC = """Fit a field to a posed dataset and evaluate it on held-out views.

    The run is written to OUT/<scene>/<field>/<timestamp>/ (config.json, checkpoints/, metrics.jsonl).
    Ctrl-C saves a checkpoint; `onefield resume RUN` continues it. Each backend's options appear with
    `--field NAME` (e.g. `onefield fit --field tensorf-vm --help`).

    Args:
        data: dataset folder: Blender/NeRF-Synthetic (transforms_train.json), instant-ngp/nerfstudio (transforms.json), LLFF (poses_bounds.npy), COLMAP project (sparse/0 + images/), DTU/IDR scan (cameras.npz) or Strecha (gt_dense_cameras/).
        field: field backend to fit: {names} (docs/fields/).
        steps: maximum optimisation steps (overrides --trainer.steps).
        minutes: training-time budget in minutes (overrides --trainer.minutes); stops at whichever limit comes first.
        downscale: divide image width and height by this on load (e.g. 8 turns 800x800 into 100x100).
        out: root folder of the runs.
        device: cpu, or cuda on a machine with a CUDA GPU.
        format: dataset format: {formats} (auto detects it from the folder's files).
        eval_split: held-out views: 'auto' (Blender: test, else val; other formats: every 8th view), a split name, or 'none'.
        aabb: scene box (min x y z, max x y z) replacing the one the reader chose.
        near: ray start distance replacing the reader's.
        far: ray end distance replacing the reader's.
        cascades: occupancy cascades replacing the reader's (the scene reaches the box scaled by 2^(cascades-1)).
        trainer: options of the training loop.
{field_doc}"""


def fit_command(field: str | None) -> Callable[..., int]:
    """`onefield fit` with the options of backend `field` under `--<field>.` (none when None, which
    imports no backend: enough for every other command and the top-level help)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Positional[Path]),
              inspect.Parameter("field", keyword, default=field or DEFAULT_FIELD, annotation=str)]
    params += [inspect.Parameter(name, keyword, default=default, annotation=annotation) for name, annotation, default in (
        ("steps", int | None, None), ("minutes", float | None, None), ("downscale", float, 1.0),
        ("out", Path, Path("runs")), ("device", str, "cpu"), ("format", Literal[FORMATS], "auto"),  # type: ignore[valid-type]
        ("eval_split", str, "auto"), ("aabb", tuple[float, float, float, float, float, float] | None, None),
        ("near", float | None, None), ("far", float | None, None), ("cascades", int | None, None),
        ("trainer", TrainerConfig, TrainerConfig()))]
    option, field_doc = _field_options(field, params)

    def fit(data: Path, **kwargs: Any) -> int:
        return _fit(data, field_config=kwargs.pop(option) if option else None, **kwargs)

    return _with_signature(fit, params, _FIT_DOC.format(names=", ".join(fields.names()), formats=", ".join(FORMATS),
                                                        field_doc=field_doc))


def _field_options(field: str | None, params: list[inspect.Parameter]) -> tuple[str | None, str]:
    """Append backend `field`'s config dataclass to `params` as `--<field>.` options (nothing when None);
    returns the parameter's name and its line of the docstring."""
    if field is None:
        return None, ""
    option, cls = field.replace("-", "_"), fields.config_class(field)
    params.append(inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=cls(), annotation=cls))
    return option, f"        {option}: options of the {field} field ({fields.registry.summary(field)}).\n"


def _with_signature(command: Callable[..., int], params: list[inspect.Parameter], doc: str) -> Callable[..., int]:
    """`command` with the signature and docstring tyro builds its options from."""
    command.__signature__ = inspect.Signature(params, return_annotation=int)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": int}
    command.__doc__ = doc
    return command


def requested_field(args: list[str], flag: str = "--field", default: str | None = DEFAULT_FIELD) -> str | None:
    """The value of `flag` (fit: --field, distill: --to) in a command's arguments (`default` when absent);
    options of another backend (`--<other>.<option>`) are a user error that says which `flag` they need."""
    field = default
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            field = args[i + 1]
        elif arg.startswith(flag + "="):
            field = arg.split("=", 1)[1]
    for arg in args:
        other = arg[2:].split(".", 1)[0] if arg.startswith("--") and "." in arg else None
        if other in fields.names() and other != field:
            raise UserError(f"{arg} is an option of the {other} backend; add {flag} {other} (the backend is {field})")
    return field


_DISTILL_DOC = """Convert a fitted run into another backend by progressive volume distillation (PVD), volumes and
    splats both ways, with no photos by default: the teacher renders random views. The student is an
    ordinary run (eval, render, export, slim, resume, a further distill) under OUT/<scene>/<to>/<timestamp>/,
    ending with RUN/distill.json: student and teacher held-out PSNR, and student vs teacher on random views.
    Each backend's options appear with `--to NAME` (e.g. `onefield distill RUN --to tensorf-cp --help`).

    Args:
        run: the teacher: a run folder written by `onefield fit` (or by an earlier distill).
        to: student backend: {names} (docs/fields/).
        steps: maximum optimisation steps (default: the teacher's budget).
        minutes: training-time budget in minutes (default: the teacher's budget).
        out: root folder of the runs.
        device: cpu or cuda (default: the teacher's device).
        distill: distillation options.
{field_doc}"""


def distill_command(field: str | None) -> Callable[..., int]:
    """`onefield distill` with the options of student backend `field` under `--<field>.`."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Positional[Path]),
              inspect.Parameter("to", keyword, default=field, annotation=str | None)]
    params += [inspect.Parameter(name, keyword, default=default, annotation=annotation) for name, annotation, default in (
        ("steps", int | None, None), ("minutes", float | None, None), ("out", Path, Path("runs")),
        ("device", str | None, None),
        ("distill", Annotated[DistillConfig, tyro.conf.OmitArgPrefixes], DistillConfig()))]
    option, field_doc = _field_options(field, params)

    def distill(run: Path, **kwargs: Any) -> int:
        return _distill(run, field_config=kwargs.pop(option) if option else None, **kwargs)

    return _with_signature(distill, params, _DISTILL_DOC.format(names=", ".join(fields.names()), field_doc=field_doc))


def _distill(run: Path, to: str | None, steps: int | None, minutes: float | None, out: Path, device: str | None,
             distill: Any, field_config: Any = None) -> int:
    from .distill import DistillJob, report_lines
    from .progress import train_with_progress

    _show_warnings()
    try:
        if to is None:
            raise UserError(f"name the student backend with --to ({', '.join(fields.names())})")
        job = DistillJob.create(run, to, field_config, distill, steps, minutes, out, device)
    except USER_ERRORS as error:
        return _fail("distill", error)
    code = train_with_progress(job)
    if code == 0 and job.report is not None:
        print("\n".join(report_lines(job.report)))
    return code


def resume(run: Positional[Path], steps: int | None = None, minutes: float | None = None,
           device: str | None = None) -> int:
    """Continue a run (a fit or a distillation) from its latest checkpoint, exactly where it stopped.

    Args:
        run: run folder written by `onefield fit` or `onefield distill`.
        steps: new step limit (default: the run's own).
        minutes: new training-time budget in minutes (default: the run's own).
        device: cpu or cuda (default: the run's device).
    """
    from .distill import resume_run
    from .progress import train_with_progress

    _show_warnings()
    try:
        job = resume_run(run, device, steps, minutes)
    except USER_ERRORS as error:
        return _fail("resume", error)
    return train_with_progress(job)


def eval(run: Positional[Path], device: str | None = None) -> int:  # noqa: A001 - the command's name
    """Evaluate a run on its held-out views: RUN/eval/metrics.json (per view and mean PSNR/SSIM, on white)
    and side-by-side images (render | ground truth | 4x error).

    Args:
        run: run folder written by `onefield fit`.
        device: cpu or cuda (default: the run's device).
    """
    from .evaluate import evaluate_run

    _show_warnings()
    try:
        metrics = evaluate_run(run, device)
    except USER_ERRORS as error:
        return _fail("eval", error)
    print(f"{len(metrics['views'])} {metrics['split']} views: PSNR {metrics['mean']['psnr']:.2f} dB, "
          f"SSIM {metrics['mean']['ssim']:.4f}")
    print(f"metrics: {(Path(run) / 'eval' / 'metrics.json').resolve()}")
    return 0


def render(run: Positional[Path], frames: int = 60, fps: int = 30, device: str | None = None) -> int:
    """Render a run's held-out cameras to RUN/renders/views/ and a turntable video to RUN/renders/turntable.mp4.

    Args:
        run: run folder written by `onefield fit`.
        frames: frames of the turntable video.
        fps: frames per second of the video.
        device: cpu or cuda (default: the run's device).
    """
    from .evaluate import render_run

    _show_warnings()
    try:
        outputs = render_run(run, frames, fps, device)
    except USER_ERRORS as error:
        return _fail("render", error)
    print(f"{len(outputs.views)} views: {(Path(run) / 'renders' / 'views').resolve()}")
    print(f"video: {outputs.video.resolve()}")
    return 0


def slim(run: Positional[Path], rank: tuple[int, ...], device: str | None = None) -> int:
    """Slim a rank-ordered model (tensorf-vm, tensorf-cp, strivec, finr) to smaller ranks without retraining
    (SlimmeRF): RUN/slim/rank-K/ per rank (a run folder for eval/render) and RUN/slim/curve.json
    (parameters, MB and held-out PSNR/SSIM per rank).

    Args:
        run: run folder written by `onefield fit`.
        rank: density ranks to keep (appearance components follow in proportion), e.g. --rank 4 8 12 16.
        device: cpu or cuda (default: the run's device).
    """
    from .slim import slim_run

    _show_warnings()
    try:
        rows = slim_run(run, list(rank), device)
    except USER_ERRORS as error:
        return _fail("slim", error)
    for row in rows:
        quality = f"PSNR {row['psnr']:.2f} dB" if "psnr" in row else "no held-out views"
        print(f"rank {row['rank']:4d}: {row['parameters']:>10,d} parameters ({row['megabytes']:.2f} MB), {quality}: {row['run']}")
    print(f"curve: {(Path(run) / 'slim' / 'curve.json').resolve()}")
    return 0


def compare(runs: Positional[tuple[Path, ...]], size: int = 256, output: Literal["rgb", "depth", "opacity"] = "rgb",
            out: Path | None = None, device: str | None = None) -> int:
    """Compare runs (usually of one scene): held-out PSNR / SSIM, size, parameters and training time in
    a table, and the same camera (the first run's default orbit) rendered by each, side by side.

    Args:
        runs: run folders written by `onefield fit`.
        size: longer side of each rendered image, pixels.
        output: what to render: rgb, depth or opacity.
        out: image file of the side-by-side renders (default: compare.png in the current folder).
        device: cpu or cuda.
    """
    import imageio.v3 as iio

    from .view import compare_runs, side_by_side

    _show_warnings()
    try:
        rows, images = compare_runs(list(runs), None, size, output, device or "cpu")
    except USER_ERRORS as error:
        return _fail("compare", error)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"{'field':<11} {'PSNR':>6} {'SSIM':>6} {'MB':>7} {'params':>10} {'steps':>7} {'seconds':>8}  run")
    for r in rows:
        print(f"{r['field']:<11} {fmt(r['psnr'], '6.2f')} {fmt(r['ssim'], '6.4f')} {r['size_mb']:7.2f} "
              f"{r['parameters']:>10,d} {fmt(r['steps'], '7d')} {fmt(r['seconds'], '8.0f')}  {r['run']}")
    path = out or Path("compare.png")
    iio.imwrite(path, side_by_side(images, [f"{r['field']} ({Path(r['run']).name})" for r in rows]))
    print(f"renders: {path.resolve()}")
    return 0


def demo(out: Path = Path("runs"), minutes: float = 1.5, size: int = 100, views: int = 64,
         device: str = "cpu") -> int:
    """Make the built-in procedural scene, fit it, evaluate it and render it, then print a summary.

    Args:
        out: root folder of the runs (the scene is written to OUT/data/shapes).
        minutes: training-time budget.
        size: image width and height in pixels.
        views: training views (a quarter as many held-out views).
        device: cpu or cuda.
    """
    from .demo import run_demo

    _show_warnings()
    try:
        return run_demo(out, minutes, size, views, device)
    except USER_ERRORS as error:
        return _fail("demo", error)


def process(source: Positional[Path], out: Path, colmap_model: Path | None = None,
            config: ProcessConfig = ProcessConfig()) -> int:
    """Turn photos or a video into a posed dataset by structure-from-motion (pycolmap, CPU): OUT/images,
    OUT/sparse/0 and a nerfstudio-compatible OUT/transforms.json that `onefield fit OUT` reads.

    Args:
        source: a folder of photos or a video file (with --colmap-model: the images the model was built from).
        out: new dataset folder (must not exist or be empty).
        colmap_model: import this existing COLMAP sparse model instead of running structure-from-motion.
        config: structure-from-motion options.
    """
    from onefield.scenes.sfm import import_colmap_model
    from onefield.scenes.sfm import process as run_process

    _show_warnings()
    try:
        if colmap_model is not None:
            result = import_colmap_model(colmap_model, source, out)
        else:
            result = run_process(source, out, config)
    except USER_ERRORS as error:
        return _fail("process", error)
    print(f"registered {len(result.registered)} / {result.total} images"
          + (f" in {result.seconds:.0f} s" if result.seconds else ""))
    if result.failed:
        print(f"not registered ({len(result.failed)}): {', '.join(result.failed)}")
    print(f"dataset: {result.out.resolve()} (fit it with: onefield fit {result.out})")
    return 0


def export(what: Positional[Literal["mesh", "pointcloud", "splats"]], run: Positional[Path],
           mesh: Annotated[MeshExportConfig, tyro.conf.OmitArgPrefixes] = MeshExportConfig(), out: Path | None = None, stride: int = 1,
           splat_format: Literal["ply", "splat"] = "ply", frame: Literal["dataset", "onefield"] = "dataset",
           device: str | None = None) -> int:
    """Export a run's surface: `export mesh RUN` (marching cubes, TSDF or Poisson; cleaned, coloured,
    PLY/OBJ/GLB under RUN/exports/ with a JSON report), `export pointcloud RUN` (back-projected
    rendered depth with colours and normals, PLY) or `export splats RUN` (a splats run's Gaussians in
    the 3DGS PLY layout, or antimatter15's .splat).

    Args:
        what: mesh, pointcloud or splats.
        run: run folder written by `onefield fit`.
        out: output file (default RUN/exports/mesh-METHOD.FORMAT, RUN/exports/pointcloud.ply or RUN/exports/splats.FORMAT).
        stride: pointcloud: keep every stride-th pixel of each view.
        splat_format: splats: ply (3DGS layout: SuperSplat, gradio Model3D, other 3DGS code) or splat (antimatter15's viewer).
        frame: splats: coordinates of the dataset's own cameras (dataset) or onefield's normalised frame.
        device: cpu or cuda (default: the run's device).
    """
    from .export import export_mesh, export_pointcloud, report_line

    _show_warnings()
    try:
        if what == "mesh":
            print(report_line(export_mesh(run, mesh, out, device)))
        elif what == "splats":
            from .splat_files import export_splats

            path, n = export_splats(run, splat_format, out, frame)
            print(f"{path}: {n:,} Gaussians")
        else:
            path, n = export_pointcloud(run, mesh.views, mesh.n_views, mesh.min_opacity, stride, out, device)
            print(f"{path}: {n:,} points")
    except USER_ERRORS as error:
        return _fail(f"export {what}", error)
    return 0


def import_splats(ply: Positional[Path], data: Path, out: Path = Path("runs"), downscale: float = 1.0,
                  format: Literal[FORMATS] = "auto", eval_split: str = "auto",  # type: ignore[valid-type]
                  frame: Literal["dataset", "onefield"] = "dataset") -> int:
    """Make a run of a 3DGS PLY trained elsewhere (the original code, gsplat, nerfstudio's splatfacto) on
    the photos of DATA: `eval`, `render` and `export` then take it like a fitted splats run.

    Args:
        ply: the splat file (3DGS PLY layout).
        data: the dataset the splats were trained on (its cameras give the frame and the held-out views).
        out: root folder of the runs.
        downscale: divide image width and height by this on load.
        format: dataset format (auto detects it).
        eval_split: held-out views, as for `fit`.
        frame: the PLY's coordinates: the dataset's cameras' (dataset) or onefield's normalised frame.
    """
    from .runs import DataSpec
    from .splat_files import import_splats as make_run

    _show_warnings()
    try:
        run = make_run(ply, DataSpec(str(data), downscale, eval_split, format), out, frame)
    except USER_ERRORS as error:
        return _fail("import-splats", error)
    print(f"run: {run} (evaluate it with: onefield eval {run})")
    return 0


def eval_mesh(mesh: Positional[Path], gt: Path, points: int = 200_000, out: Path | None = None) -> int:
    """Score a mesh against a ground-truth mesh: Chamfer distance, F-score at 0.5% and 1%, normal
    consistency (distances relative to the ground truth's bounding-box diagonal); prints and writes JSON.

    Args:
        mesh: the mesh to score (PLY, OBJ, GLB, STL, OFF).
        gt: the ground-truth mesh.
        points: surface samples per mesh.
        out: JSON file (default: MESH with the suffix .eval.json).
    """
    from .mesh_metrics import score_mesh_file

    try:
        score, path = score_mesh_file(mesh, gt, points, out)
    except USER_ERRORS as error:
        return _fail("eval-mesh", error)
    fs = "  ".join(f"F@{k} {v:.4f}" for k, v in score.fscore.items())
    print(f"Chamfer {score.chamfer:.5f} (of the diagonal {score.diagonal:.3f})  {fs}  "
          f"normal consistency {score.normal_consistency:.4f}")
    print(f"scores: {path.resolve()}")
    return 0


def mesh_scene(mesh: Positional[Path], out: Positional[Path], texture: Path | None = None,
               up: Literal["x", "y", "z"] = "y", views: int = 100, test_views: int = 20, size: int = 200) -> int:
    """Render a mesh into a Blender dataset with known geometry: OUT/{train,test}/ images on a sphere
    of views and OUT/mesh.ply (the mesh in the scene's coordinates, the ground truth for eval-mesh).

    Args:
        mesh: the mesh (OBJ, PLY, GLB, STL, OFF); its texture (UVs + image) or vertex colours are used.
        out: dataset folder to write.
        texture: texture image for a mesh with UVs whose material names none.
        up: the mesh's up axis (OBJ files are usually y-up).
        views: training views.
        test_views: held-out views.
        size: image width and height in pixels.
    """
    from onefield.scenes.mesh_scene import make_mesh_scene

    try:
        scene = make_mesh_scene(mesh, out, texture, up, views, test_views, size)
    except USER_ERRORS as error:
        return _fail("mesh-scene", error)
    print(f"{scene.root.resolve()}: {views} train + {test_views} test views at {size}x{size}, "
          f"ground truth {scene.mesh_path.name}")
    return 0


def batch(plan: Positional[Path | None] = None, scenes: tuple[Path, ...] = (), fields: tuple[str, ...] = (),
          minutes: float | None = None, steps: int | None = None, downscale: float | None = None,
          export: tuple[Literal["mesh"], ...] = (), out: Path | None = None, device: str | None = None,
          jobs: int | None = None, threads: int | None = None, ray: str | None = None, gpus: float = 0.0,
          retries: int = 2) -> int:
    """Fit every scene with every backend (plus the plan's distillations and mesh exports), locally or on
    a Ray cluster, then write OUT/report.html, results.csv and results.json. Running the same plan again
    skips the finished cells and resumes the interrupted ones from their checkpoints.

    Args:
        plan: a YAML or TOML plan file (see docs/batch.md); the options below override its keys.
        scenes: dataset folders (as `fit` takes them).
        fields: backends, e.g. hashgrid tensorf-cp splats.
        minutes: training-time budget per cell (with --steps: whichever comes first).
        steps: step budget per cell.
        downscale: divide every scene's image size by this (a scene of the plan may name its own).
        export: what each cell exports: mesh (scored by F-score where the dataset has a mesh.ply).
        out: output root (default: the plan's, else batch-runs).
        device: cpu or cuda (default: the plan's, else cpu; cuda where --gpus is given).
        jobs: cells at once on this machine (default: cores / threads).
        threads: CPU threads per cell (default: 2, or cores / jobs).
        ray: the address of an existing Ray cluster (e.g. 127.0.0.1:6379) to run the cells on as tasks.
        gpus: GPUs per cell on the Ray cluster (fractions share one).
        retries: starts again of a cell whose worker was killed (it resumes from its checkpoint).
    """
    from .batch.plan import make_plan, read_plan_file
    from .progress import batch_with_progress

    _show_warnings()
    given = {"scenes": [str(p.resolve()) for p in scenes] or None, "fields": list(fields) or None,
             "minutes": minutes, "steps": steps, "downscale": downscale, "export": list(export) or None,
             "out": str(out.resolve()) if out is not None else None,
             "device": device or ("cuda" if gpus > 0 else None)}
    try:
        raw = read_plan_file(plan) if plan is not None else {}
        if minutes is not None or steps is not None:  # a budget on the command line replaces the file's
            raw.pop("minutes", None), raw.pop("steps", None)
        raw |= {k: v for k, v in given.items() if v is not None}
        spec = make_plan(raw, plan.parent if plan is not None else Path("."))
        if spec.minutes is None and spec.steps is None:
            raise UserError("give each cell a budget: --minutes M and / or --steps N (or minutes: / steps: in the plan)")
    except USER_ERRORS as error:
        return _fail("batch", error)
    try:
        return batch_with_progress(spec, jobs=jobs, threads=threads, ray=ray, gpus=gpus, retries=retries)
    except USER_ERRORS as error:
        return _fail("batch", error)


def report(runs: Positional[Path]) -> int:
    """Rebuild a batch's report (report.html, results.csv, results.json) from the run folders under RUNS.

    Args:
        runs: a batch's output folder, or any folder holding run folders.
    """
    from .batch.report import write_report

    try:
        rows, path = write_report(runs)
    except USER_ERRORS as error:
        return _fail("report", error)
    print(f"{len(rows)} cell(s); report: {path} (results.csv, results.json)")
    return 0


def gui(host: str = "127.0.0.1", port: int = 7860, workspace: Path = Path("workspace"), share: bool = False,
        trainings: int = 1) -> int:
    """Serve the GUI in a browser: data -> fit -> view -> export -> compare, runs kept in WORKSPACE.

    Args:
        host: address to bind; 127.0.0.1 serves this machine only (over SSH: ssh -L 7860:127.0.0.1:7860 HOST).
        port: port to serve on.
        workspace: folder of the sessions, datasets (WORKSPACE/data) and runs (WORKSPACE/runs); created if missing.
        share: also open a public gradio.live link (off unless asked: anyone with the link can use the page).
        trainings: trainings that run at the same time (others wait in a queue).
    """
    from .gui import launch
    from .runs import check_output_folder

    try:
        check_output_folder(workspace)
        if trainings < 1:
            raise UserError(f"--trainings must be at least 1, got {trainings}")
    except USER_ERRORS as error:
        return _fail("gui", error)
    print(f"onefield gui: http://{host}:{port} (workspace {workspace.resolve()})", flush=True)
    launch(workspace, host, port, share, trainings=trainings)
    return 0


COMMANDS: dict[str, Callable[..., int]] = {
    "process": process, "fit": fit_command(None), "distill": distill_command(None), "resume": resume, "eval": eval, "render": render, "compare": compare, "slim": slim,
    "export": export, "import-splats": import_splats, "eval-mesh": eval_mesh, "mesh-scene": mesh_scene, "batch": batch, "report": report, "demo": demo, "gui": gui, "info": info}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    commands = dict(COMMANDS)
    try:
        if args[:1] == ["fit"]:
            commands["fit"] = fit_command(requested_field(args[1:]))
        elif args[:1] == ["distill"]:
            commands["distill"] = distill_command(requested_field(args[1:], "--to", None))
    except UserError as error:
        return _fail(args[0], error)
    return tyro.extras.subcommand_cli_from_dict(commands, prog="onefield", description="Neural fields: fit, evaluate, render.",
                                                args=args)


if __name__ == "__main__":
    sys.exit(main())
