"""Execute one chapter outside the book build, at a chosen scale, and print its claims and timing.

    python scripts/run_chapter.py 01_setting --scale default

Exits 1 if a cell (and so a claim) fails. The tests use :func:`execute_myst` the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def temporary_environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` (a kernel started inside inherits it); restore on exit."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_myst(path: Path, claims_dir: Path, scale: str = "smoke", timeout: int = 900,
                 preamble: str | None = None) -> None:
    """Execute a MyST notebook in its own folder, as Jupyter Book does, at the given scale.

    Claims go to ``claims_dir``; any failing cell (a failing claim among them) raises
    ``nbclient.exceptions.CellExecutionError``. ``preamble`` is code run in the kernel before the
    chapter's first cell (the planted-error test installs a wrong formula this way).
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    notebook = jupytext.read(path, fmt="md:myst")
    if preamble:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(preamble))
    env = {"CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": str(claims_dir), "MPLBACKEND": "Agg"}
    with temporary_environment(env):
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="file stem under book/chapters, e.g. 01_setting")
    parser.add_argument("--scale", default="smoke", choices=("smoke", "default", "large"))
    parser.add_argument("--claims-dir", type=Path, help="keep the claims JSON here (default: a temporary folder)")
    args = parser.parse_args()
    path = REPO / "book" / "chapters" / f"{args.chapter}.md"
    with tempfile.TemporaryDirectory() as tmp:
        claims_dir = args.claims_dir or Path(tmp)
        start = time.perf_counter()
        try:
            execute_myst(path, Path(claims_dir), scale=args.scale)
            status = 0
        except Exception as err:  # report the failing cell, then the claims recorded so far
            print(err, file=sys.stderr)
            status = 1
        elapsed = time.perf_counter() - start
        record = Path(claims_dir) / f"{args.chapter}.json"
        if record.exists():
            for c in json.loads(record.read_text())["claims"]:
                mark = "ok  " if c["passed"] else "FAIL"
                print(f"{mark} [{c.get('kind', '?')}] {c['name']}: theory {c['theory']:.6g}, measured {c['measured']:.6g}, tol {c['tolerance']:.2g}")
    print(f"{args.chapter} at scale {args.scale}: {'passed' if status == 0 else 'FAILED'} in {elapsed:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
