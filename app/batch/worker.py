"""The local pool's worker process: `python -m onefield.app.batch.worker CELL.json RESULT.json THREADS`
runs one cell and writes its record. A process per cell, not a `multiprocessing` pool: a worker killed
by the kernel (SIGKILL, out of memory) takes only its own cell down, and the pool sees its signal."""

import json
import sys
import warnings
from pathlib import Path

from .cell import run_cell
from .plan import Cell


def main(argv: list[str]) -> int:
    cell_file, result_file, threads = Path(argv[0]), Path(argv[1]), int(argv[2])
    warnings.simplefilter("default")  # to the cell's log
    record = run_cell(Cell.from_json(cell_file.read_text()), threads)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
