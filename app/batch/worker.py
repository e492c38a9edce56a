"""The local pool's worker process: `python -m onefield.app.batch.worker CELL.json RESULT.json THREADS`
runs one cell and writes its record. A process per cell, not a `multiprocessing` pool: a worker killed
by the kernel (SIGKILL, out of memory) takes only its own cell down, and the pool sees its signal."""

import sys
import warnings
from pathlib import Path

from .cell import run_cell, write_json
from .plan import Cell


def main(argv: list[str]) -> int:
    cell_file, result_file, threads = Path(argv[0]), Path(argv[1]), int(argv[2])
    warnings.simplefilter("default")  # to the cell's log
    record = run_cell(Cell.from_json(cell_file.read_text()), threads)
    write_json(result_file, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
