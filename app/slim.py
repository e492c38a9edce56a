"""`onefield slim`: truncate a rank-ordered model (SlimmeRF) to smaller ranks without retraining,
write each as a run folder of its own, and measure the PSNR-versus-size curve."""

import dataclasses
import json
from pathlib import Path

from onefield import fields
from onefield.errors import UserError
from onefield.fields.ranks import SlimmableField

from .checkpoint import save_weights
from .evaluate import run_renderer


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def slim_run(run_dir: Path, ranks: list[int], device: str | None = None) -> list[dict]:
    """For each rank K: RUN/slim/rank-K/ (config.json + checkpoints/latest/model.safetensors, ready
    for `onefield eval/render`) and one row of RUN/slim/curve.json (parameters, MB, held-out PSNR/SSIM)."""
    run_dir = Path(run_dir)
    config, trainer, _, held_out, _ = run_renderer(run_dir, device)
    model = trainer.model
    if not isinstance(model, SlimmableField):
        slimmable = [n for n in fields.names() if fields.registry.import_error(n) is None
                     and issubclass(fields.registry.field_class(n), SlimmableField)]
        raise UserError(f"{run_dir}: a {config.field} model has no rank to slim; slimmable backends: "
                         f"{', '.join(slimmable)}")
    if not ranks:
        raise UserError("give at least one rank, e.g. --rank 4 8 16")
    rows = []
    for rank in sorted(set(ranks), reverse=True):
        slim = model.slim(rank)
        out = run_dir / "slim" / f"rank-{rank}"
        trainer.model = slim
        save_weights(out, trainer)
        slim_config = dataclasses.replace(config, field_config=slim.config_dict())
        slim_config.save(out)
        n = parameter_count(slim)
        row = {"rank": rank, "parameters": n, "megabytes": round(n * 4 / 2**20, 3), "run": str(out)}
        if held_out is not None:
            result = trainer.evaluate(held_out)
            row.update(psnr=result.mean_psnr, ssim=result.mean_ssim)
        rows.append(row)
    trainer.model = model
    (run_dir / "slim").mkdir(exist_ok=True)
    (run_dir / "slim" / "curve.json").write_text(json.dumps({"run": str(run_dir), "field": config.field,
                                                             "full_rank": model.rank, "curve": rows}, indent=1))
    return rows
