"""The batch report, rebuilt from run folders alone (`onefield report RUNS_DIR`): every run under the
root (a batch's cells or any runs), plus the failures `batch.json` recorded for cells that never made
a run folder.

    results.json  one row per cell: scene, backend, teacher, status, PSNR, SSIM, size, training time,
                  steps, mesh F-score and Chamfer where a ground truth was scored, error, run folder
    results.csv   the same rows
    report.html   one self-contained page: per scene a table (the best PSNR and F-score marked), the
                  held-out and training PSNR against training time of each backend (metrics.jsonl), a
                  thumbnail of a held-out render per cell
"""

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from onefield.errors import UserError

from ..checkpoint import MissingRunFile
from ..mesh_metrics import DEFAULT_THRESHOLDS, threshold_label
from ..runs import RunConfig
from ..view import run_summary
from .cell import THUMBNAIL, read_record

COLUMNS = ("scene", "backend", "teacher", "status", "psnr", "ssim", "size_mb", "seconds", "steps", "fscore",
           "chamfer", "error", "run")
FSCORE_AT = threshold_label(DEFAULT_THRESHOLDS[-1])  # the tables' F-score: at 1 % of the ground truth's diagonal
THUMB_PX = 160
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def run_folders(root: Path) -> list[Path]:
    """Every run folder under `root` (a config.json beside checkpoints/), in path order."""
    return sorted(p.parent for p in Path(root).rglob("config.json")
                  if (p.parent / "checkpoints").is_dir() and ".batch" not in p.parts)


def _mesh_score(run_dir: Path, record: dict[str, Any]) -> tuple[float | None, float | None]:
    """(F-score at FSCORE_AT, Chamfer) of the cell's scored mesh, or of the newest `*.eval.json` export."""
    if "fscore" in record:
        return record["fscore"].get(FSCORE_AT), record.get("chamfer")
    scored = sorted((run_dir / "exports").glob("*.eval.json"), key=lambda p: p.stat().st_mtime)
    if not scored:
        return None, None
    score = json.loads(scored[-1].read_text())
    return score["fscore"].get(FSCORE_AT), score["chamfer"]


def run_row(run_dir: Path) -> dict[str, Any]:
    """The report's row of one run folder."""
    config, record = RunConfig.load(run_dir), read_record(run_dir) or {}
    row: dict[str, Any] = {"scene": config.scene, "backend": config.field,
                           "teacher": (config.distill or {}).get("teacher_field"),
                           "status": record.get("status", "done"), "error": record.get("error"), "run": str(run_dir)}
    try:
        summary = run_summary(run_dir)
    except (MissingRunFile, OSError) as error:  # no complete checkpoint (yet)
        row["error"] = row["error"] or str(error)
        return row
    row |= {k: summary[k] for k in ("psnr", "ssim", "size_mb", "seconds", "steps")}
    row["fscore"], row["chamfer"] = _mesh_score(run_dir, record)
    return row


def _failures_without_runs(root: Path, seen: set[str]) -> list[dict[str, Any]]:
    """Cells `batch.json` records as failed that have no run folder (e.g. their dataset did not load)."""
    path = Path(root) / "batch.json"
    if not path.is_file():
        return []
    rows = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["run"] in seen or cell["status"] != "failed":
            continue
        spec = cell.get("cell", {})
        rows.append({"scene": spec.get("scene"), "backend": spec.get("field"), "teacher": spec.get("teacher_field"),
                     "status": "failed", "error": cell.get("error"), "run": cell["run"]})
    return rows


def collect(root: Path) -> list[dict[str, Any]]:
    """The rows of every run under `root` and of the batch's cells that failed before making one."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (pass a batch's --out, or any folder holding runs)")
    rows = [run_row(d) for d in run_folders(root)]
    rows += _failures_without_runs(root, {r["run"] for r in rows})
    if not rows:
        raise UserError(f"{root} holds no run folders (config.json and checkpoints/) and no batch.json")
    return rows


def curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """A run's PSNR against training seconds from its metrics.jsonl: 'held-out' (the periodic and final
    evaluations) and 'training' (the logged training PSNR)."""
    found: dict[str, list[tuple[float, float]]] = {"held-out": [], "training": []}
    log = Path(run_dir) / "metrics.jsonl"
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written by a run still training
        if r.get("psnr") is None or r.get("seconds") is None:
            continue
        kind = {"eval": "held-out", "final_eval": "held-out", "train": "training"}.get(r.get("event"))
        if kind is not None:
            found[kind].append((r["seconds"], r["psnr"]))
    return {k: sorted(v) for k, v in found.items()}


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _label(row: dict[str, Any]) -> str:
    return f"{row['teacher']} → {row['backend']}" if row.get("teacher") else str(row["backend"])


def _fmt(value: Any, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _thumbnail(run: str) -> str:
    path = Path(run) / THUMBNAIL
    if not path.is_file():
        return ""
    image = Image.open(path)
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return f'<img alt="held-out render" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def svg_curves(series: list[tuple[str, dict[str, list[tuple[float, float]]]]], width: int = 560,
               height: int = 260) -> str:
    """An inline SVG of PSNR against seconds: per (label, curves) its held-out points joined by a solid
    line and its training PSNR as a dashed line, in one colour."""
    points = [p for _, c in series for ps in c.values() for p in ps]
    if not points:
        return "<p>no PSNR logged</p>"
    pad_l, pad_r, pad_t, pad_b = 48, 170, 12, 36
    x_max = max(x for x, _ in points) or 1.0
    y_lo, y_hi = min(y for _, y in points), max(y for _, y in points)
    y_lo, y_hi = (y_lo - 1, y_hi + 1) if y_hi - y_lo < 1e-6 else (y_lo, y_hi)
    sx = lambda x: pad_l + (width - pad_l - pad_r) * x / x_max  # noqa: E731
    sy = lambda y: height - pad_b - (height - pad_t - pad_b) * (y - y_lo) / (y_hi - y_lo)  # noqa: E731
    mid_y = pad_t + (height - pad_t - pad_b) / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="curves">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
             'fill="none" stroke="#999"/>',
             f'<text x="{pad_l + (width - pad_l - pad_r) / 2}" y="{height - 6}" text-anchor="middle">training seconds '
             '(solid: held-out, dashed: training)</text>',
             f'<text x="12" y="{mid_y}" transform="rotate(-90 12 {mid_y})" text-anchor="middle">PSNR (dB)</text>']
    for frac in (0.0, 0.5, 1.0):
        x, y = x_max * frac, y_lo + (y_hi - y_lo) * frac
        parts.append(f'<text x="{sx(x):.1f}" y="{height - pad_b + 14}" text-anchor="middle">{x:.0f}</text>')
        parts.append(f'<text x="{pad_l - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    for i, (label, c) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        for kind, dash in (("training", ' stroke-dasharray="4 3" stroke-opacity="0.6"'), ("held-out", "")):
            ps = c.get(kind, [])
            if len(ps) > 1:
                coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps)
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>' for x, y in c.get("held-out", [])]
        parts.append(f'<text x="{width - pad_r + 8}" y="{pad_t + 14 + 16 * i}" fill="{color}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _best(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return max(values) if values else None


def _scene_section(scene: str, rows: list[dict[str, Any]]) -> str:
    best_psnr, best_f = _best(rows, "psnr"), _best(rows, "fscore")
    head = ("backend", "status", "PSNR", "SSIM", "size (MB)", "training (s)", "steps", f"F@{FSCORE_AT}", "Chamfer",
            "held-out view", "error")
    lines = [f"<h2>{html.escape(scene)}</h2>", "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        psnr = _fmt(r.get("psnr"), 2) + (" ★" if r.get("psnr") is not None and r["psnr"] == best_psnr else "")
        fscore = _fmt(r.get("fscore"), 4) + (" ★" if r.get("fscore") is not None and r["fscore"] == best_f else "")
        best = ' class="best"' if r.get("psnr") is not None and r["psnr"] == best_psnr else ""
        cells = (html.escape(_label(r)), _fmt(r["status"], 0), psnr, _fmt(r.get("ssim"), 4), _fmt(r.get("size_mb"), 2),
                 _fmt(r.get("seconds"), 1), _fmt(r.get("steps"), 0), fscore, _fmt(r.get("chamfer"), 5),
                 _thumbnail(r["run"]), f'<pre>{html.escape(r["error"])}</pre>' if r.get("error") else "")
        lines.append(f"<tr{best}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("</table>")
    series = [(_label(r), curves(Path(r["run"]))) for r in rows if (Path(r["run"]) / "metrics.jsonl").is_file()]
    if series:
        lines += ["<h3>PSNR against training time</h3>", svg_curves(series)]
    return "\n".join(lines)


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:middle}th{background:#f3f3f3}
td:first-child{text-align:left}tr.best td{font-weight:600;background:#eef7ee}pre{text-align:left;white-space:pre-wrap;
max-width:420px;margin:0;font-size:11px;color:#a00}svg.curves text{font-size:11px}td img{min-width:96px;image-rendering:pixelated}"""


def report_html(rows: list[dict[str, Any]], root: Path) -> str:
    """The report page of `rows` (`collect`), self-contained: styles inline, thumbnails as data URLs."""
    scenes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        scenes.setdefault(str(r["scene"]), []).append(r)
    failed = sum(r["status"] == "failed" for r in rows)
    body = [f"<h1>onefield batch: {html.escape(str(root))}</h1>",
            f"<p>{len(rows)} cell(s) over {len(scenes)} scene(s); {failed} failed. ★: the best of the scene. "
            "Rows: results.csv, results.json.</p>"]
    body += [_scene_section(scene, scene_rows) for scene, scene_rows in scenes.items()]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>onefield batch</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(root: Path) -> tuple[list[dict[str, Any]], Path]:
    """Write results.json, results.csv and report.html into `root`; returns (rows, report.html)."""
    root = Path(root).resolve()
    rows = collect(root)
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    write_csv(rows, root / "results.csv")
    (root / "report.html").write_text(report_html(rows, root))
    return rows, root / "report.html"
