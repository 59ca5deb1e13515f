"""Plant one wrong formula in clkit and execute its chapter: the chapter must fail through one of
its own claims.

    python scripts/plant_error.py 02-tau-star-2pct                 # one planted error
    python scripts/plant_error.py --chapter 02_projection_heads    # all of a chapter's
    python scripts/plant_error.py --list
    python scripts/plant_error.py --json book/_static/planted_errors.json   # all, with a record
    python scripts/plant_error.py --science --chapter 06_generalization    # caught by the science?

``--science`` sets ``CLKIT_DEFER_KINDS=derivation,identity`` (see :mod:`clkit.claims`): a failed
derivation or identity claim is recorded but does not stop the chapter, which runs on until a
result or bound claim fails. A planted error then counts as caught only when a *result or bound*
claim fails; each outcome records the first failing claim of any kind and the claim (and kind) that
stopped the chapter. The test suite and the status page's record use this mode.

Each planted error runs in a fresh process. By default (on POSIX) one parent process imports torch,
clkit, SymPy, SciPy and matplotlib once and *forks* a child per planted error; the child plants the
error and executes the chapter's code cells in order in an IPython shell, exactly as the book's
kernel would, until a cell fails. ``--kernel`` executes each run in a new Jupyter kernel instead
(slower: kernel start and imports every time). Exit status 0 when every run was caught by a
``ClaimFailure``; 1 otherwise. The tests call :func:`run_chapter_planted`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO / "scripts"))

import planted_errors  # noqa: E402


@dataclass(frozen=True)
class PlantedOutcome:
    id: str
    chapter: str
    target: str
    description: str
    caught: bool  # the chapter failed through a ClaimFailure (in --science mode: of a result or bound)
    detail: str  # the claim that caught it, or how the chapter failed otherwise
    seconds: float
    kind: str = ""  # kind of the claim that caught it ("" if none)
    first_failed: str = ""  # the first claim that failed, of any kind (recorded ones included)
    first_failed_kind: str = ""
    science: bool = False  # run with derivation and identity failures deferred


#: The kinds whose failures --science records without stopping the chapter.
DEFERRED_IN_SCIENCE_MODE = "derivation,identity"


def _chapter_cells(chapter: str) -> list[str]:
    import jupytext

    notebook = jupytext.read(REPO / "book" / "chapters" / f"{chapter}.md", fmt="md:myst")
    return [c.source for c in notebook.cells if c.cell_type == "code"]


def _failed_claims(claims_dir: Path, chapter: str) -> list[dict]:
    """The chapter's failed claims in the order they were checked (from its claims JSON)."""
    path = Path(claims_dir) / f"{chapter}.json"
    if not path.is_file():
        return []
    return [c for c in json.loads(path.read_text())["claims"] if not c["passed"]]


def _outcome(p: planted_errors.PlantedError, caught: bool, detail: str, seconds: float,
             failed: list[dict], science: bool) -> PlantedOutcome:
    """``caught`` as the run reported it; in science mode only a result or bound claim catches."""
    last = failed[-1] if failed else {}
    kind = last.get("kind", "") if caught else ""
    if science and kind not in ("result", "bound"):
        caught = False
    first = failed[0] if failed else {}
    return PlantedOutcome(p.id, p.chapter, p.target, p.description, caught, detail[:300], seconds,
                          kind, str(first.get("name", ""))[:200], first.get("kind", ""), science)


def _preload() -> None:
    """Import once, in the parent, what every chapter imports (no computation: forking stays safe)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401
    import sympy  # noqa: F401
    import torch  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
    from myst_nb import glue  # noqa: F401

    import clkit  # noqa: F401


def _run_in_this_process(p: planted_errors.PlantedError, cells: list[str], scale: str,
                         science: bool) -> tuple[bool, str, list[dict]]:
    """Plant ``p`` and execute ``cells`` in an IPython shell: (caught by a ClaimFailure, detail,
    the failed claims in order)."""
    with tempfile.TemporaryDirectory() as claims_dir:
        caught, detail = _execute_cells(p, cells, scale, science, claims_dir)
        return caught, detail, _failed_claims(Path(claims_dir), p.chapter)


def _execute_cells(p: planted_errors.PlantedError, cells: list[str], scale: str, science: bool,
                   claims_dir: str) -> tuple[bool, str]:
    from IPython.core.interactiveshell import InteractiveShell

    os.environ.update({"CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": claims_dir, "MPLBACKEND": "Agg",
                       "CLKIT_DEFER_KINDS": DEFERRED_IN_SCIENCE_MODE if science else ""})
    os.chdir(REPO / "book" / "chapters")
    planted_errors.plant(p.id)
    shell = InteractiveShell.instance()
    sink = io.StringIO()
    for source in cells:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            result = shell.run_cell(source, store_history=False)
        err = result.error_in_exec or result.error_before_exec
        if err is not None:
            name = type(err).__name__
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return name == "ClaimFailure", text if name == "ClaimFailure" else f"{name}: {text}"
    return False, "the chapter passed"


def _run_forked(p: planted_errors.PlantedError, cells: list[str], scale: str, science: bool) -> PlantedOutcome:
    start = time.perf_counter()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            caught, detail, failed = _run_in_this_process(p, cells, scale, science)
        except BaseException as err:  # noqa: BLE001 -- report any crash to the parent
            caught, detail, failed = False, f"{type(err).__name__}: {err}", []
        with os.fdopen(write_fd, "w") as pipe:
            pipe.write(json.dumps([caught, detail, failed]))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    caught, detail, failed = json.loads(payload) if payload else (False, "the child process died", [])
    return _outcome(p, caught, detail, time.perf_counter() - start, failed, science)


def _run_kernel(p: planted_errors.PlantedError, scale: str, science: bool) -> PlantedOutcome:
    from nbclient.exceptions import CellExecutionError

    from run_chapter import execute_myst, temporary_environment

    preamble = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import planted_errors\n"
        f"planted_errors.plant({p.id!r})\n"
        "del planted_errors"
    )
    start = time.perf_counter()
    deferred = {"CLKIT_DEFER_KINDS": DEFERRED_IN_SCIENCE_MODE if science else ""}
    with tempfile.TemporaryDirectory() as claims_dir, temporary_environment(deferred):
        try:
            execute_myst(REPO / "book" / "chapters" / f"{p.chapter}.md", Path(claims_dir), scale=scale,
                         preamble=preamble)
            caught, detail = False, "the chapter passed"
        except CellExecutionError as err:
            caught = err.ename == "ClaimFailure"
            detail = (err.evalue if caught else f"{err.ename}: {err.evalue}").strip().splitlines()[0]
        failed = _failed_claims(Path(claims_dir), p.chapter)
    return _outcome(p, caught, detail, time.perf_counter() - start, failed, science)


def run_all(chosen: list[planted_errors.PlantedError], scale: str = "smoke", kernel: bool = False,
            echo: bool = True, science: bool = False) -> list[PlantedOutcome]:
    """Run each planted error of ``chosen`` (see the module docstring)."""
    use_fork = hasattr(os, "fork") and not kernel
    if use_fork:
        _preload()
    cells: dict[str, list[str]] = {}
    outcomes = []
    for p in chosen:
        if use_fork:
            cells.setdefault(p.chapter, _chapter_cells(p.chapter))
            o = _run_forked(p, cells[p.chapter], scale, science)
        else:
            o = _run_kernel(p, scale, science)
        outcomes.append(o)
        if echo:
            by = f"[{o.kind}]" if o.kind else ""
            first = f" (first failure: [{o.first_failed_kind}] {o.first_failed})" if (
                o.first_failed and o.first_failed_kind != o.kind) else ""
            print(f"{'caught ' if o.caught else 'MISSED '} {o.id:<40} {o.seconds:5.1f} s {by} {o.detail}{first}",
                  flush=True)
    return outcomes


def run_chapter_planted(chapter: str, scale: str = "smoke", science: bool = True) -> list[PlantedOutcome]:
    """All planted errors of ``chapter``, run in a fresh interpreter (the tests' entry point)."""
    command = [sys.executable, str(Path(__file__)), "--chapter", chapter, "--scale", scale, "--json", "-"]
    result = subprocess.run(command + (["--science"] if science else []),
                            capture_output=True, text=True, timeout=1800, cwd=REPO)
    start = result.stdout.find("[")
    if start < 0:
        raise RuntimeError(f"plant_error.py failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return [PlantedOutcome(**o) for o in json.loads(result.stdout[start:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="planted error ids (default: all)")
    parser.add_argument("--chapter", help="all planted errors of this chapter (file stem)")
    parser.add_argument("--scale", default="smoke", choices=("smoke", "default", "large"))
    parser.add_argument("--kernel", action="store_true", help="a new Jupyter kernel per run (no fork)")
    parser.add_argument("--science", action="store_true",
                        help="defer derivation and identity failures: caught only by a result or bound claim")
    parser.add_argument("--list", action="store_true", help="list the planted errors and exit")
    parser.add_argument("--json", help="write the outcomes as JSON to this file ('-' for stdout, last)")
    args = parser.parse_args()
    chosen = [p for p in planted_errors.PLANTED
              if (not args.ids or p.id in args.ids) and (not args.chapter or p.chapter == args.chapter)]
    if args.list:
        for p in chosen:
            print(f"{p.id:<36} {p.target:<44} {p.description}")
        return 0
    outcomes = run_all(chosen, args.scale, args.kernel, echo=args.json != "-", science=args.science)
    records = [asdict(o) for o in outcomes]
    if args.json == "-":
        print(json.dumps(records))
    elif args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO).stdout.strip()
        meta = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": commit, "scale": args.scale, "science": args.science,
                "outcomes": records}
        Path(args.json).write_text(json.dumps(meta, indent=2) + "\n")
    return 0 if all(o.caught for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
