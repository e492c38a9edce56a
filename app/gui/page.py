"""The onefield page: Data -> Fit -> Convert -> View -> Export -> Compare, and the runs of the workspace.

Every handler takes the browser's session id first and works inside that session's folders
(`workspace.py`). Trainings and structure-from-motion run in background queues (`app/jobs.py`), so
closing the browser stops nothing and a reopened page shows them again; the page polls their
plain state. Renders and exports run in the request itself, behind gradio's queue (renders share
one group of two workers, exports one of one; whoever waits sees their position). Runs of the
shared `WORKSPACE/runs` are read-only to a session: their exports and videos go to the session's
folder, and resuming one continues a copy of it in the session. Nothing here trains or renders by
itself: it calls the engine's jobs and the viewer (`app/view.py`).
"""

import functools
import html
import math
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from onefield import fields
from onefield.errors import UserError
from onefield.scenes import make_shapes_scene
from onefield.scenes.sfm import ProcessConfig

from .. import view
from ..checkpoint import MissingRunFile, find_checkpoint
from ..distill import DistillJob, report_lines, resume_run
from ..distill_config import DistillConfig
from ..fit import FitJob
from ..jobs import FINISHED, PAUSED, QUEUED, RUNNING, JobQueue, JobState
from ..mesh_config import COLORINGS, FORMATS, METHODS, CleanupConfig, MeshExportConfig
from ..runs import DataSpec, RunConfig, unique_child
from ..scene_plot import scene_figure
from ..tasks import DistillTask, FitTask, ProcessTask
from ..trainer import TrainerConfig
from . import forms
from .uploads import UploadLimits, stage_upload
from .workspace import Session, Workspace, safe_name

DEMO = "demo: the built-in shapes scene"
SETTLE_SECONDS = 0.3  # a view that rests this long after a coarse preview is rendered in full
MAX_SIZE, MAX_VIDEO_SIZE = 1024, 512  # px, longest side: a request cannot ask the server for more
PUBLISHED_SECONDS = 3600  # copies handed to gradio are removed after an hour
MAX_POINTS = 2000  # newest points of the live curves sent to the page
SHOWN_DIGITS = {"seconds": 1, "psnr": 2, "ssim": 4, "size_mb": 2, "fscore": 4, "chamfer": 5}  # the runs and compare tables
# Options the page sets itself (the budget) or that need a GUI of their own, left out of the forms.
TRAINER_OWN = ("steps", "minutes")
# The GUI's trainer defaults: a held-out point on the PSNR curve every 500 steps (4 views: cheap),
# and a checkpoint as often, so a GUI that is closed or killed loses little.
GUI_TRAINER = TrainerConfig(eval_every=500, eval_max_views=4, checkpoint_every=500)
# The trainings with a live panel (status, curves, preview; its buttons act on the newest), by job kind.
LIVE = {"fit": "training", "distill": "conversion"}


def _user_errors(fn):
    """Run a handler; a UserError becomes the page's error message (gradio's Error), nothing else breaks."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
    return wrapped


def _size(value: float, limit: int = MAX_SIZE) -> int:
    size = int(value)
    if not 16 <= size <= limit:
        raise UserError(f"image size must be 16..{limit} px, got {size}")
    return size


@dataclass
class Forms:
    process: list[forms.Option]
    trainer: list[forms.Option]
    mesh: list[forms.Option]
    backends: dict[str, list[forms.Option]]
    distill: list[forms.Option]


class Gui:
    def __init__(self, workspace: Workspace, limits: UploadLimits = UploadLimits(), trainings: int = 1):
        self.workspace, self.limits = workspace, limits
        self.trainings = JobQueue(trainings)  # one training at a time by default
        self.work = JobQueue(1)  # structure-from-motion
        self._published = Path(tempfile.mkdtemp(prefix="onefield-gui-"))
        self._lock = threading.Lock()
        self._finished: dict[str, int] = {}  # per open page: finished jobs at its last poll
        self._moves: dict[str, int] = {}  # per session: coarse previews so far (see `settle`)
        self.forms = Forms(
            forms.options(ProcessConfig),
            [o for o in forms.options(TrainerConfig, defaults=GUI_TRAINER) if o.name not in TRAINER_OWN],
            forms.options(MeshExportConfig, choices={"method": METHODS, "format": FORMATS, "colors": COLORINGS,
                                                     "views": ("train", "sphere")}),
            {name: forms.options(fields.config_class(name)) for name in fields.names()
             if fields.registry.import_error(name) is None},
            forms.options(DistillConfig))

    # ---- helpers ------------------------------------------------------------------------------
    def session(self, sid: str | None) -> Session:
        return self.workspace.session(sid)

    def publish(self, path: Path) -> str:
        """A copy of a workspace file in a folder gradio may serve (the workspace itself it may not);
        copies older than an hour are removed."""
        now = time.time()
        for old in self._published.iterdir():
            try:
                if now - old.stat().st_mtime > PUBLISHED_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another request pruned it first
                continue
        folder = Path(tempfile.mkdtemp(dir=self._published))
        return str(shutil.copy2(path, folder / path.name))

    @staticmethod
    def label(session: Session, path: Path | str) -> str:
        """A path as the page shows it: inside the session or the shared folders, no session id."""
        path = Path(path)
        if path.is_relative_to(session.root):
            return str(path.relative_to(session.root))
        return "shared/" + str(path.relative_to(session.workspace.root))

    @staticmethod
    def output_dir(session: Session, run: Path, kind: str) -> Path:
        """Where exports / renders of `run` go: the run's own folder, or for a shared run one of the session's."""
        if run.is_relative_to(session.runs):
            return run / kind
        return session.root / kind / "-".join(run.parts[-3:])

    def jobs(self, sid: str) -> list[JobState]:
        return sorted(self.trainings.jobs(sid) + self.work.jobs(sid), key=lambda s: s.created)

    def latest(self, sid: str, kind: str) -> JobState | None:
        found = [s for s in self.jobs(sid) if s.kind == kind]
        return found[-1] if found else None

    def current(self, sid: str, kind: str) -> JobState | None:
        """The training of `kind` (a fit, a distillation) its panel shows and its buttons act on: the
        newest running or paused one, else the newest queued one, else the newest."""
        fits = [s for s in self.jobs(sid) if s.kind == kind]
        for statuses in ((RUNNING, PAUSED), (QUEUED,)):
            found = [s for s in fits if s.status in statuses]
            if found:
                return found[-1]
        return fits[-1] if fits else None

    def run_choices(self, session: Session) -> list[tuple[str, str]]:
        """Runs with a complete checkpoint (one that is still before its first lists as a job)."""
        labels = []
        for run in session.run_dirs():
            try:
                find_checkpoint(run)
            except (MissingRunFile, FileNotFoundError):
                continue
            root = session.runs if run.is_relative_to(session.runs) else session.workspace.shared_runs
            where = "" if root == session.runs else " (shared)"
            labels.append((" / ".join(run.relative_to(root).parts) + where, str(run)))
        return labels

    def batch_choices(self, session: Session) -> list[tuple[str, str]]:
        """Batch output folders, labelled as the page shows paths."""
        return [(self.label(session, b), str(b)) for b in session.batch_dirs()]

    def dataset_choices(self, session: Session) -> list[tuple[str, str]]:
        return [(DEMO, DEMO)] + [(p.name + ("" if p.is_relative_to(session.data) else " (shared)"), str(p))
                                 for p in session.datasets()]

    def dataset_path(self, session: Session, dataset: str) -> Path:
        if dataset == DEMO:
            return self.demo_scene(session)
        return session.resolve(dataset, "dataset")

    def demo_scene(self, session: Session) -> Path:
        path = session.data / "shapes-demo"
        with self._lock:
            if not (path / "transforms_train.json").is_file():
                shutil.rmtree(path, ignore_errors=True)
                make_shapes_scene(path, n_train=48, n_test=8, size=96)
        return path

    # ---- Data ---------------------------------------------------------------------------------
    def start(self, sid: str | None):
        """The session (a new one when the browser has none) and its lists."""
        session = self.workspace.session(sid, create=True)
        runs = self.run_choices(session)
        run = runs[0][1] if runs else None
        one = gr.update(choices=runs, value=run)  # the lists in layout's `run_lists` order
        return (session.id, gr.update(choices=self.dataset_choices(session)), one, one, one,
                gr.update(choices=runs, value=[]), one, self.runs_table(session),
                f"session `{session.id[:8]}` · workspace `{self.workspace.root}`",
                gr.update(choices=self.batch_choices(session)))

    @_user_errors
    def upload(self, sid: str, files: list[str] | None, *process_values):
        """Check the upload, then queue structure-from-motion on it; the file input is cleared."""
        session = self.session(sid)
        config = ProcessConfig(**forms.read(self.forms.process, list(process_values)))
        paths = [Path(f) for f in files or []]
        if any(not p.is_file() for p in paths):
            raise UserError("the uploaded files are gone from the server (used already?): choose them again")
        dest = unique_child(session.uploads, safe_name(paths[0].name if paths else "upload"))
        try:
            staged = stage_upload([(p, p.name) for p in paths], dest, self.limits)
        finally:
            for p in paths:  # gradio's copy: the checked one lives in the session only
                p.unlink(missing_ok=True)
        source = staged.folder if staged.kind == "photos" else staged.folder / staged.names[0]
        out = unique_child(session.data, dest.name)
        job = self.work.submit(ProcessTask(source, out, config), session.id)
        return (f"{len(staged.names)} file(s) accepted ({staged.bytes / 1e6:.1f} MB); {job.title} queued as {job.id}",
                gr.update(value=None))

    @_user_errors
    def show_dataset(self, sid: str, dataset: str):
        session = self.session(sid)
        if not dataset:
            return None, ""
        path = self.dataset_path(session, dataset)
        return scene_figure(path), f"dataset `{path.name}`"

    # ---- Fit ----------------------------------------------------------------------------------
    def submit_fit(self, session: Session, dataset: str, backend: str, field_options: dict[str, Any],
                   trainer_options: dict[str, Any], downscale: float) -> JobState:
        path = self.dataset_path(session, dataset)
        field_config = fields.make_config(backend, field_options)  # names a bad option before anything runs
        trainer = TrainerConfig(**trainer_options)
        trainer.check()
        spec = DataSpec(str(path), downscale)
        task = FitTask(lambda: FitJob.create(spec, backend, field_config, trainer, session.runs),
                       f"fit {backend} on {path.name}")
        return self.trainings.submit(task, session.id)

    @_user_errors
    def start_fit(self, sid: str, dataset: str, backend: str, minutes: float | None, steps: float | None,
                  downscale: float, *values):
        """Start button: the chosen backend's form and the trainer's form, as generated."""
        session = self.session(sid)
        n_trainer = len(self.forms.trainer)
        trainer = forms.read(self.forms.trainer, list(values[:n_trainer])) | self.budget(minutes, steps)
        field_options = self.backend_options(backend, values[n_trainer:])
        job = self.submit_fit(session, dataset, backend, field_options, trainer, float(downscale or 1))
        return self.fit_status(job, session)

    def backend_options(self, backend: str, values) -> dict[str, Any]:
        """The chosen backend's part of the values of every backend's form, in the order of `forms.backends`."""
        if backend not in self.forms.backends:
            raise UserError(f"unknown or unavailable field backend {backend!r}")
        names = list(self.forms.backends)
        offset = sum(len(self.forms.backends[n]) for n in names[:names.index(backend)])
        opts = self.forms.backends[backend]
        return forms.read(opts, list(values[offset:offset + len(opts)]))

    @staticmethod
    def budget(minutes: float | None, steps: float | None) -> dict[str, Any]:
        if not minutes and not steps:
            raise UserError("give a time budget (minutes) or a step budget")
        return {"minutes": float(minutes) if minutes else None, "steps": int(steps) if steps else 1_000_000}

    @_user_errors
    def fit_api(self, sid: str, dataset: str, backend: str, field_options: dict | None, trainer_options: dict | None,
                minutes: float | None, steps: float | None, downscale: float) -> str:
        """For scripts (gradio_client): options as JSON objects; returns the job id."""
        session = self.session(sid)
        known = {f.name for f in dataclass_fields(TrainerConfig)}
        unknown = sorted(set(trainer_options or {}) - known)
        if unknown:
            raise UserError(f"unknown trainer option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        trainer = asdict(GUI_TRAINER) | (trainer_options or {}) | self.budget(minutes, steps)
        return self.submit_fit(session, dataset, backend, field_options or {}, trainer, float(downscale or 1)).id

    @_user_errors
    def control(self, sid: str, action: str, kind: str = "fit"):
        """Pause, Resume or Stop the session's current training of `kind` (a fit, a distillation)."""
        job = self.current(sid, kind)
        if job is None or not job.active:
            raise UserError(f"no {LIVE[kind]} is running in this session")
        getattr(self.trainings, action)(job.id, sid)
        return self.fit_status(job, self.session(sid), kind)

    def fit_status(self, job: JobState | None, session: Session, kind: str = "fit") -> str:
        """A training's state (a fit's or a distillation's: the same live info), for its panel."""
        if job is None:
            return f"no {LIVE[kind]} yet"
        i, lines = job.info, [f"**{job.title}** · {job.status}"]
        if job.queue_position:
            lines[0] += f" · position {job.queue_position} in the queue: another training runs first"
        if job.error:
            lines.append(f"error: {job.error}")
        if "step" in i:
            eta = "-" if i.get("eta_seconds") is None else f"{i['eta_seconds']:.0f} s"
            psnr = "-" if i.get("psnr") is None else f"{i['psnr']:.2f} dB"
            held = "" if i.get("eval_psnr") is None else f" · held-out {i['eval_psnr']:.2f} dB"
            lines.append(f"{bar(job.progress)} · step {i['step']} · loss {i['loss'] or math.nan:.4f} · "
                         f"train PSNR {psnr}{held} · {i['samples_per_ray']:.1f} samples/ray · "
                         f"{i['rays_per_second'] / 1000:.1f}k rays/s · ETA {eta}")
        if i.get("report"):  # a distillation's quality report: the student beside its teacher
            lines += report_lines(i["report"])
        elif i.get("final_psnr") is not None:
            lines.append(f"held-out PSNR {i['final_psnr']:.2f} dB, SSIM {i['final_ssim']:.4f}")
        if "run" in i:
            lines.append(f"run `{self.label(session, i['run'])}`")
        return "\n\n".join(lines)

    def poll(self, sid: str, request: gr.Request = None):  # gradio passes the page's request
        """Timer tick: each live panel's training (`LIVE`), the latest processing's state and the job
        list; the dataset and run lists too when a job has finished since this page's last tick."""
        try:
            session = self.session(sid)
        except UserError:
            return (gr.skip(),) * (4 * len(LIVE) + 9)
        finished = sum(not s.active for s in self.jobs(session.id))
        page = request.session_hash if request is not None and request.session_hash else session.id
        lists = (gr.skip(),) * 7
        if self._finished.get(page) != finished:
            self._finished[page] = finished
            lists = self.refresh(session.id)
        panels = [out for kind in LIVE for out in self.live(session, kind)]
        return (*panels, self.process_status(self.latest(session.id, "process"), session),
                self.jobs_table(session.id), *lists)

    def live(self, session: Session, kind: str) -> tuple:
        """One live panel: (status, loss curve, PSNR curves, preview) of the current training of `kind`."""
        fit = self.current(session.id, kind)
        points = list(fit.info.get("history", [])) if fit else []  # a snapshot: the worker appends to it
        history = pd.DataFrame(points[-MAX_POINTS:], columns=["step", "seconds", "loss", "psnr", "eval_psnr"], dtype=float)
        psnr = history.rename(columns={"psnr": "training rays", "eval_psnr": "held-out views"}).melt(
            id_vars=["seconds"], value_vars=["training rays", "held-out views"], var_name="series", value_name="dB").dropna()
        preview = fit.info.get("preview") if fit else None
        loss = history[["seconds", "loss"]].dropna()
        # an empty frame is never sent: gradio's plot then draws no later line (seen with 6.31)
        loss, psnr = (loss, psnr) if len(loss) else (gr.skip(), gr.skip())
        return self.fit_status(fit, session, kind), loss, psnr, preview if preview is not None else gr.skip()

    def process_status(self, job: JobState | None, session: Session) -> str:
        if job is None:
            return ""
        text = f"**{job.title}** · {job.status} · {bar(job.progress)} · {job.message}"
        if job.queue_position:
            text += f" · position {job.queue_position} in the queue"
        if job.error:
            text += f"\n\nerror: {job.error}"
        if job.result:
            r = job.result
            text += f"\n\nregistered {len(r['registered'])} / {r['total']} images"
            if r["failed"]:
                text += f"; not registered: {', '.join(r['failed'])}"
            text += f"\n\ndataset `{self.label(session, r['dataset'])}` is ready: pick it in the list"
        return text

    def jobs_table(self, sid: str) -> pd.DataFrame:
        return pd.DataFrame([{"job": s.id, "what": s.title, "status": s.status, "progress": f"{100 * s.progress:.0f}%",
                              "queue": s.queue_position or "", "message": s.error or s.message}
                             for s in reversed(self.jobs(sid))], columns=["job", "what", "status", "progress", "queue", "message"])

    @_user_errors
    def job(self, sid: str, job_id: str) -> dict[str, Any]:
        """For scripts: a job's plain state (status, progress, message, result, error, and a
        distillation's quality report)."""
        found = [s for s in self.jobs(self.session(sid).id) if s.id == job_id]
        if not found:
            raise UserError(f"no job {job_id!r} in this session")
        s = found[0]
        return {"id": s.id, "status": s.status, "progress": s.progress, "message": s.message, "error": s.error,
                "result": str(s.result) if isinstance(s.result, Path) else s.result, "finished": s.status in FINISHED,
                "report": s.info.get("report")}

    # ---- Convert ------------------------------------------------------------------------------
    def submit_distill(self, session: Session, run: str, backend: str, field_options: dict[str, Any],
                       distill_options: dict[str, Any], minutes: float | None, steps: float | None) -> JobState:
        """A distillation of `run` (the teacher) into a new run of `backend` in the session's runs."""
        teacher = self.run_path(session, run)
        field_config = fields.make_config(backend, field_options)  # bad options are named before anything runs
        distill = fields.registry.config_from_dict(DistillConfig, distill_options, "distill")
        distill.check()
        budget = self.budget(minutes, steps)
        task = DistillTask(lambda: DistillJob.create(teacher, backend, field_config, distill, budget["steps"],
                                                     budget["minutes"], session.runs),
                           f"convert {RunConfig.load(teacher).field} {teacher.name} to {backend}")
        return self.trainings.submit(task, session.id)

    @_user_errors
    def start_distill(self, sid: str, run: str, backend: str, minutes: float | None, steps: float | None, *values):
        """Convert's Start button: the distillation's form, then every backend's form, as generated."""
        session = self.session(sid)
        n_distill = len(self.forms.distill)
        distill = forms.read(self.forms.distill, list(values[:n_distill]))
        job = self.submit_distill(session, run, backend, self.backend_options(backend, values[n_distill:]),
                                  distill, minutes, steps)
        return self.fit_status(job, session, "distill")

    @_user_errors
    def distill_api(self, sid: str, run: str, backend: str, field_options: dict | None, distill_options: dict | None,
                    minutes: float | None, steps: float | None) -> str:
        """For scripts (gradio_client): options as JSON objects; returns the job id."""
        return self.submit_distill(self.session(sid), run, backend, field_options or {}, distill_options or {},
                                   minutes, steps).id

    # ---- View ---------------------------------------------------------------------------------
    def run_path(self, session: Session, run: str) -> Path:
        path = session.resolve(run, "run")
        RunConfig.load(path)  # a clear error for a folder that is not a run
        return path

    @_user_errors
    def view_defaults(self, sid: str, run: str):
        session = self.session(sid)
        if not run:
            return (gr.skip(),) * 5
        o = view.open_view(self.run_path(session, run)).default_orbit()
        return (gr.update(value=round(o.azimuth, 1)), gr.update(value=round(o.elevation, 1)),
                gr.update(value=round(o.distance, 3), minimum=round(0.3 * o.distance, 3), maximum=round(3 * o.distance, 3)),
                gr.update(value=round(o.fov, 1)), self.render(sid, run, o.azimuth, o.elevation, o.distance, o.fov, "rgb", 256))

    @_user_errors
    def render(self, sid: str, run: str, azimuth: float, elevation: float, distance: float, fov: float,
               output: str, size: float, coarse: bool = False):
        session = self.session(sid)
        size = _size(size)
        v = view.open_view(self.run_path(session, run))
        orbit = view.Orbit(float(azimuth), float(elevation), float(distance), float(fov))
        if not coarse:
            return v.render(orbit, size, output)
        w, h = v.image_size(size)  # the coarse image blown up to the full one's size, pixels visible
        return np.asarray(Image.fromarray(v.preview(orbit, output)).resize((w, h), Image.NEAREST))

    def preview(self, sid, run, azimuth, elevation, distance, fov, output, size):
        """While a slider moves: the coarse image only."""
        if not run:
            return gr.skip()
        with self._lock:
            self._moves[sid] = self._moves.get(sid, 0) + 1
        return self.render(sid, run, azimuth, elevation, distance, fov, output, size, coarse=True)

    def settle(self, sid, run, azimuth, elevation, distance, fov, output, size):
        """After a coarse preview: the full image, unless the view moved again meanwhile (then that
        move's own settle renders it)."""
        moves = self._moves.get(sid)
        time.sleep(SETTLE_SECONDS)
        if not run or self._moves.get(sid) != moves:
            return gr.skip()
        return self.render(sid, run, azimuth, elevation, distance, fov, output, size)

    @_user_errors
    def turntable(self, sid: str, run: str, elevation: float, distance: float, fov: float, output: str, size: float):
        session = self.session(sid)
        path = self.run_path(session, run)
        orbit = view.Orbit(0.0, float(elevation), float(distance), float(fov))
        out = self.output_dir(session, path, "renders") / f"turntable-{output}.mp4"
        video = view.open_view(path).turntable(orbit, _size(size, MAX_VIDEO_SIZE), 48, 24, out, output)
        return self.publish(video)

    # ---- Export -------------------------------------------------------------------------------
    @_user_errors
    def export_mesh(self, sid: str, run: str, *values):
        """Extract the mesh, write it as PLY, OBJ and GLB, preview the GLB."""
        import trimesh

        from ..export import export_mesh, report_line

        session = self.session(sid)
        path = self.run_path(session, run)
        config = MeshExportConfig(**self._mesh_values(values))
        config.check()
        out = self.output_dir(session, path, "exports") / f"mesh-{config.method}.{config.format}"
        export = export_mesh(path, config, out)
        mesh = trimesh.load(export.path, force="mesh")
        written = [export.path, export.path.with_suffix(".json")]
        for fmt in FORMATS:
            if fmt != config.format:
                other = export.path.with_suffix(f".{fmt}")
                (mesh if fmt != "ply" or not config.texture else _vertex_colored(mesh)).export(other)
                written.append(other)
        glb = export.path.with_suffix(".glb")
        report = report_line(export).replace(str(export.path), self.label(session, export.path))
        return self.publish(glb), [self.publish(p) for p in written], report

    def _mesh_values(self, values) -> dict[str, Any]:
        raw = forms.read(self.forms.mesh, list(values))
        return raw | {"cleanup": CleanupConfig(**raw["cleanup"])}

    @_user_errors
    def export_splats(self, sid: str, run: str):
        """A splats run's Gaussians as the 3DGS PLY (shown as splats by the 3D viewer) and as .splat."""
        from ..splat_files import export_splats

        session = self.session(sid)
        path = self.run_path(session, run)
        out = self.output_dir(session, path, "exports")
        ply, n = export_splats(path, "ply", out / "splats.ply")
        splat, _ = export_splats(path, "splat", out / "splats.splat")
        return self.publish(ply), [self.publish(ply), self.publish(splat)], f"{self.label(session, ply)}: {n:,} Gaussians"

    @_user_errors
    def export_pointcloud(self, sid: str, run: str, *values):
        from ..export import export_pointcloud

        session = self.session(sid)
        path = self.run_path(session, run)
        config = MeshExportConfig(**self._mesh_values(values))
        out = self.output_dir(session, path, "exports") / "pointcloud.ply"
        out, n = export_pointcloud(path, config.views, config.n_views, config.min_opacity, 2, out)
        return self.publish(out), f"{self.label(session, out)}: {n:,} points"

    # ---- Compare and runs ----------------------------------------------------------------------
    @_user_errors
    def compare(self, sid: str, runs: list[str], output: str, size: float):
        session = self.session(sid)
        rows, images = view.compare_runs([self.run_path(session, r) for r in runs or []], None, _size(size), output)
        labels = [f"{r['field']} ({Path(r['run']).name})" for r in rows]
        table = pd.DataFrame([r | {"run": self.label(session, r["run"])} for r in rows]).round(SHOWN_DIGITS)
        return table, view.side_by_side(images, labels)

    @_user_errors
    def open_batch(self, sid: str, batch: str):
        """A batch's cells (a table), its report (rebuilt from its run folders, written nowhere: a shared
        batch is read-only) as a page and a download, and its finished cells chosen for Compare."""
        from ..batch.report import COLUMNS, collect, report_html

        session = self.session(sid)
        path = session.resolve(batch, "batch")
        if not (path / "batch.json").is_file():
            raise UserError(f"{self.label(session, path)} is not a batch output folder (no batch.json): run "
                            f"`onefield batch --out {path}` to make one")
        rows = collect(path)
        page = report_html(rows, path)
        out = session.root / "reports" / f"{safe_name(path.name, 'batch')}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)
        table = pd.DataFrame([{k: r.get(k) for k in COLUMNS} | {"run": self.label(session, r["run"])} for r in rows])
        frame = f'<iframe title="batch report" srcdoc="{html.escape(page)}" style="width:100%;height:640px;border:0"></iframe>'
        done = [r["run"] for r in rows if r["status"] in ("done", "skipped") and r.get("psnr") is not None]
        runs = self.run_choices(session)
        return (table.round(SHOWN_DIGITS), frame, self.publish(out),
                gr.update(choices=runs, value=[r for r in done if r in {v for _, v in runs}]))

    def runs_table(self, session: Session) -> pd.DataFrame:
        rows = []
        for run in session.run_dirs():
            try:
                rows.append(view.run_summary(run) | {"run": self.label(session, run)})
            except (UserError, FileNotFoundError):
                continue  # a half-made run folder, or one whose checkpoint is being replaced: next time
        return pd.DataFrame(rows).round(SHOWN_DIGITS)

    @_user_errors
    def refresh(self, sid: str):
        session = self.session(sid)
        runs = self.run_choices(session)
        keep = gr.update(choices=runs)
        return (gr.update(choices=self.dataset_choices(session)), *(keep,) * 5, self.runs_table(session),
                gr.update(choices=self.batch_choices(session)))

    @_user_errors
    def resume(self, sid: str, run: str, minutes: float | None):
        """Continue a run (a fit, or a distillation from its teacher): a stopped one to its own budget,
        a finished one for `minutes` more. A shared run is continued as a copy in the session."""
        session = self.session(sid)
        path = self.run_path(session, run)
        if not path.is_relative_to(session.runs):
            copy = session.runs / Path(*path.parts[-3:])
            if not copy.exists():
                shutil.copytree(path, copy)
            path = copy
        if any(s.active and s.info.get("run") == str(path) for s in self.jobs(session.id)):
            raise UserError(f"{path.name} is training already")
        summary, config = view.run_summary(path), RunConfig.load(path)
        budget = config.trainer
        if summary["seconds"] is None:
            raise UserError(f"{path.name} holds the field's weights only (no trainer state): nothing to resume")
        spent = summary["steps"] >= budget["steps"] or (
            budget["minutes"] is not None and summary["seconds"] >= 60 * budget["minutes"])
        steps = more = None
        if spent:
            if not minutes or float(minutes) <= 0:
                raise UserError(f"{path.name} has finished its budget: give the minutes to add")
            steps, more = 10**9, summary["seconds"] / 60 + float(minutes)  # minutes more, the step limit lifted
        task_class = FitTask if config.distill is None else DistillTask  # shown on the Fit or the Convert page
        task = task_class(lambda: resume_run(path, steps=steps, minutes=more), f"resume {summary['field']} {path.name}")
        job = self.trainings.submit(task, session.id, run=str(path))
        return self.fit_status(job, session, job.kind)


def bar(progress: float, width: int = 20) -> str:
    """A text progress bar: `██████░░░░ 60%`."""
    done = round(width * progress)
    return f"`{'█' * done}{'░' * (width - done)}` {100 * progress:.0f}%"


def _vertex_colored(mesh):
    """A textured mesh with its texture sampled at the vertices (PLY keeps vertex colours only)."""
    colored = mesh.copy()
    colored.visual = mesh.visual.to_color()
    return colored
