"""A batch plan: scenes x backends, budgets, optional distillations and mesh exports, an output root.

Written as YAML or TOML (or given as `onefield batch` options, which override the file):

    out: batch-runs
    minutes: 2                      # or steps: 3000 (whichever comes first when both)
    scenes:
      - ../shared/data/nerf-synthetic-mic           # a dataset folder, as `fit` takes it
      - {path: ../shared/data/llff-fern, downscale: 2}  # with DataSpec options (downscale, format, eval_split...)
    downscale: 8                    # the default of every scene that names none
    fields: [hashgrid, tensorf-cp]  # or a table of backend -> options: {hashgrid: {log2_table_size: 17}}
    trainer: {checkpoint_every: 250}  # TrainerConfig options for every cell
    distill: [{from: hashgrid, to: mlp, minutes: 1}]  # a student of each scene's hashgrid cell
    export: [mesh]                  # a mesh per cell (F-score where the dataset has mesh.ply)
    mesh: {method: mc, resolution: 128}

Every cell is an ordinary run folder at a fixed place: `OUT/<scene>/<field>/batch` for a fit and
`OUT/<scene>/<student>/from-<teacher>` for a distillation, so that running the plan again finds it.
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onefield import fields
from onefield.errors import UserError
from onefield.fields.registry import config_from_dict

from ..distill_config import DistillConfig
from ..mesh_config import CleanupConfig, MeshExportConfig
from ..runs import DataSpec, scene_name
from ..trainer import TrainerConfig

GT_MESH = "mesh.ply"  # a dataset's ground-truth surface (`onefield mesh-scene`, the demo scene)
# A killed cell loses at most `checkpoint_every` steps; a held-out point (4 views) every 500 steps draws
# the report's PSNR-versus-time curves (evaluation is not counted in a time budget).
BATCH_DEFAULTS = {"checkpoint_every": 250, "eval_every": 500, "eval_max_views": 4}
FIT_NAME = "batch"


def mesh_export_config(values: dict[str, Any]) -> MeshExportConfig:
    """`MeshExportConfig` from plain data, its `cleanup` block included."""
    values = dict(values)
    cleanup = config_from_dict(CleanupConfig, _mapping(values.pop("cleanup", None), "mesh.cleanup"), "mesh.cleanup")
    return dataclasses.replace(config_from_dict(MeshExportConfig, values, "mesh"), cleanup=cleanup)


@dataclass(frozen=True)
class Cell:
    """One unit of a batch: a fit, or a distillation of the fit `teacher`, in the run folder `run_dir`.
    Plain data only: it travels to worker processes as JSON and to Ray workers pickled."""

    scene: str
    field: str
    data: dict[str, Any]  # DataSpec fields
    field_options: dict[str, Any]
    trainer: dict[str, Any]  # TrainerConfig fields (the budget included)
    run_dir: str
    device: str = "cpu"
    teacher: str | None = None  # the teacher cell's run folder (a distillation)
    teacher_field: str | None = None
    distill: dict[str, Any] | None = None  # DistillConfig fields
    mesh: dict[str, Any] | None = None  # MeshExportConfig fields, where a mesh is exported
    gt_mesh: str | None = None

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.teacher_field}->{self.field}" if self.teacher else f"{self.scene}/{self.field}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        return cls(**json.loads(text))


@dataclass
class Distillation:
    teacher: str  # the backend of a fit cell of the plan
    student: str
    options: dict[str, Any] = field(default_factory=dict)  # the student backend's options
    minutes: float | None = None  # None: the plan's budget
    steps: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # DistillConfig options


@dataclass
class BatchPlan:
    scenes: list[DataSpec]
    fields: dict[str, dict[str, Any]]  # backend -> its options
    out: Path = Path("batch-runs")
    minutes: float | None = None
    steps: int | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    distill: list[Distillation] = field(default_factory=list)
    export_mesh: bool = False
    mesh: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def check(self) -> None:
        """Every name and option valid before any cell starts: a typo fails in a second, not an hour in."""
        if not self.scenes:
            raise UserError("the plan names no scenes (scenes: [DIR, ...] or --scenes DIR ...)")
        if not self.fields:
            raise UserError("the plan names no backends (fields: [hashgrid, ...] or --fields NAME ...)")
        names: dict[str, str] = {}
        for spec in self.scenes:
            name = scene_name(spec.path)
            if name in names and names[name] != spec.path:
                raise UserError(f"two scenes are named {name!r} ({names[name]} and {spec.path}): their cells would "
                                "share run folders; rename one folder")
            names[name] = spec.path
        for name, options in self.fields.items():
            fields.make_config(name, options)  # an unknown backend or option names itself
        self.trainer_config(self.minutes, self.steps).check()
        for d in self.distill:
            if d.teacher not in self.fields:
                raise UserError(f"distill from {d.teacher!r}: not a backend of the plan ({', '.join(self.fields)})")
            fields.make_config(d.student, d.options)
            config_from_dict(DistillConfig, d.config, f"distill {d.teacher} -> {d.student}").check()
        if self.export_mesh:
            mesh_export_config(self.mesh).check()

    def trainer_config(self, minutes: float | None, steps: int | None) -> TrainerConfig:
        values = {**BATCH_DEFAULTS, **self.trainer}
        if minutes is not None:
            values["minutes"] = minutes
        if steps is not None:
            values["steps"] = steps
        elif minutes is not None:
            values["steps"] = 10_000_000  # a time budget alone: the time decides
        return config_from_dict(TrainerConfig, values, "trainer")

    def cells(self) -> list[Cell]:
        """Fits first (scene-major), then the distillations, which run once their teacher is done."""
        out = Path(self.out).resolve()
        fit_trainer = dataclasses.asdict(self.trainer_config(self.minutes, self.steps))
        mesh = dataclasses.asdict(mesh_export_config(self.mesh)) if self.export_mesh else None
        cells, fits = [], {}
        for spec in self.scenes:
            scene = scene_name(spec.path)
            gt = Path(spec.path) / GT_MESH
            common = dict(scene=scene, data=dataclasses.asdict(spec), device=self.device, mesh=mesh,
                          gt_mesh=str(gt) if gt.is_file() else None)
            for name, options in self.fields.items():
                cell = Cell(field=name, field_options=options, trainer=fit_trainer,
                            run_dir=str(out / scene / name / FIT_NAME), **common)
                cells.append(cell)
                fits[scene, name] = cell
        for spec in self.scenes:
            scene = scene_name(spec.path)
            for d in self.distill:
                teacher = fits[scene, d.teacher]
                budget = (d.minutes, d.steps) if d.minutes is not None or d.steps is not None else (self.minutes, self.steps)
                cells.append(dataclasses.replace(
                    teacher, field=d.student, field_options=d.options,
                    trainer=dataclasses.asdict(self.trainer_config(*budget)),
                    run_dir=str(out / scene / d.student / f"from-{d.teacher}"), teacher=teacher.run_dir,
                    teacher_field=d.teacher, distill=dataclasses.asdict(config_from_dict(DistillConfig, d.config, "distill"))))
        return cells


PLAN_KEYS = ("out", "minutes", "steps", "scenes", "downscale", "fields", "trainer", "distill", "export", "mesh", "device")
DISTILL_KEYS = {"from": "teacher", "to": "student", "options": "options", "minutes": "minutes", "steps": "steps",
                "distill": "config"}


def read_plan_file(path: Path) -> dict[str, Any]:
    """The plan file's contents as plain data (YAML: .yaml / .yml, TOML: .toml)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such plan file")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(path.read_text()) or {}
        else:
            raise UserError(f"{path}: a plan is a .yaml, .yml or .toml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a valid plan file ({error})") from error
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a plan is a mapping of {', '.join(PLAN_KEYS)}")
    unknown = sorted(set(raw) - set(PLAN_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown plan key(s) {', '.join(unknown)}; known: {', '.join(PLAN_KEYS)}")
    return raw


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a mapping of options, got {value!r}")
    return value


def _scene(entry: Any, base: Path, downscale: float) -> DataSpec:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or "path" not in entry:
        raise UserError(f"a scene is a dataset folder or a mapping with 'path', got {entry!r}")
    values = {"downscale": downscale, **entry}
    values["path"] = str((base / Path(values["path"]).expanduser()).resolve())
    spec = config_from_dict(DataSpec, values, f"scene {entry['path']}")
    if not Path(spec.path).is_dir():
        raise UserError(f"scene {entry['path']}: {spec.path} is not a folder")
    return spec


def _fields(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return {name: {} for name in value}
    if isinstance(value, dict):
        return {name: _mapping(options, f"fields.{name}") for name, options in value.items()}
    raise UserError(f"fields must be a list of backends or a mapping backend -> options, got {value!r}")


def _distillation(entry: Any) -> Distillation:
    if not isinstance(entry, dict) or not {"from", "to"} <= set(entry):
        raise UserError(f"a distillation is a mapping with 'from' and 'to' (and options, minutes, steps, distill), "
                        f"got {entry!r}")
    unknown = sorted(set(entry) - set(DISTILL_KEYS))
    if unknown:
        raise UserError(f"distill {entry['from']} -> {entry['to']}: unknown key(s) {', '.join(unknown)}; known: "
                        f"{', '.join(DISTILL_KEYS)}")
    values = {DISTILL_KEYS[k]: v for k, v in entry.items()}
    values["options"], values["config"] = _mapping(values.get("options"), "options"), _mapping(values.get("config"), "distill")
    return Distillation(**values)


def make_plan(raw: dict[str, Any], base: Path = Path(".")) -> BatchPlan:
    """A checked plan from plain data (a plan file's, with command-line options laid over it); relative
    scene and output paths are taken from `base` (the plan file's folder)."""
    export = raw.get("export") or []
    export = [export] if isinstance(export, str) else list(export)
    if set(export) - {"mesh"}:
        raise UserError(f"export: only 'mesh' is exported per cell, got {export}")
    plan = BatchPlan(scenes=[_scene(s, base, float(raw.get("downscale") or 1.0)) for s in raw.get("scenes") or []],
                     fields=_fields(raw.get("fields") or []),
                     out=(base / Path(raw.get("out") or "batch-runs").expanduser()).resolve(),
                     minutes=raw.get("minutes"), steps=raw.get("steps"),
                     trainer=_mapping(raw.get("trainer"), "trainer"),
                     distill=[_distillation(d) for d in raw.get("distill") or []], export_mesh="mesh" in export,
                     mesh=_mapping(raw.get("mesh"), "mesh"), device=raw.get("device") or "cpu")
    plan.check()
    return plan
