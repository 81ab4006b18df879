"""Execute every notebook headless and write its figures (PDF and PNG).

    python notebooks/run_all.py [--runs checkpoints] [--figures notebooks/figures] [--timeout 600]

The notebooks are stored without outputs and are not rewritten: each runs in
memory, in the notebooks folder, with ``SCMT_NOTEBOOK_RUNS`` and
``SCMT_FIGURES`` set from the options. Exit status 1 when a notebook fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def run_notebook(path: Path, timeout: int) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(HERE.parent / "checkpoints"), help="runs directory (default: the shipped demo runs)")
    parser.add_argument("--figures", default=str(HERE / "figures"), help="where figures go (default notebooks/figures)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    parser.add_argument("--only", default=None, help="run only notebooks whose name contains this text")
    args = parser.parse_args(argv)

    runs = Path(args.runs).resolve()
    if not runs.is_dir():
        print(f"error: --runs {runs} is not a directory", file=sys.stderr)
        return 2
    os.environ["SCMT_NOTEBOOK_RUNS"] = str(runs)
    os.environ["SCMT_FIGURES"] = str(Path(args.figures).resolve())
    failed = []
    for path in sorted(HERE.glob("*.ipynb")):
        if args.only and args.only not in path.name:
            continue
        started = time.time()
        try:
            run_notebook(path, args.timeout)
            print(f"{path.name}: ok ({time.time() - started:.0f} s)", flush=True)
        except CellExecutionError as error:
            failed.append(path.name)
            summary = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            print(f"{path.name}: failed: {summary}", file=sys.stderr, flush=True)
    print(f"figures in {os.environ['SCMT_FIGURES']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
