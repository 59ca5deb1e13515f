"""Plant one wrong formula in clkit and execute its chapter: the chapter must fail through one of
its own claims.

    python scripts/plant_error.py 02-tau-star-2pct        # one planted error
    python scripts/plant_error.py --chapter 02_projection_heads   # all of a chapter's
    python scripts/plant_error.py --list

Exit status 0 when every planted error run was caught by a ``ClaimFailure``; 1 otherwise. The
tests run the same function (:func:`run_planted`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO / "scripts"))

import planted_errors  # noqa: E402
from run_chapter import execute_myst  # noqa: E402


@dataclass(frozen=True)
class PlantedOutcome:
    id: str
    chapter: str
    caught: bool  # the chapter failed through a ClaimFailure
    detail: str  # the claim that caught it, or how the chapter failed otherwise
    seconds: float


def run_planted(error_id: str, scale: str = "smoke") -> PlantedOutcome:
    """Execute the chapter of ``error_id`` with the planted error installed; report how it failed."""
    from nbclient.exceptions import CellExecutionError

    (p,) = [q for q in planted_errors.PLANTED if q.id == error_id]
    preamble = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import planted_errors\n"
        f"planted_errors.plant({error_id!r})\n"
        "del planted_errors"
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as claims_dir:
        try:
            execute_myst(REPO / "book" / "chapters" / f"{p.chapter}.md", Path(claims_dir), scale=scale,
                         preamble=preamble)
        except CellExecutionError as err:
            caught = err.ename == "ClaimFailure"
            detail = (err.evalue if caught else f"{err.ename}: {err.evalue}").strip().splitlines()[0][:300]
            return PlantedOutcome(p.id, p.chapter, caught, detail, time.perf_counter() - start)
    return PlantedOutcome(p.id, p.chapter, False, "the chapter passed", time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="planted error ids (default: all)")
    parser.add_argument("--chapter", help="all planted errors of this chapter (file stem)")
    parser.add_argument("--scale", default="smoke", choices=("smoke", "default", "large"))
    parser.add_argument("--list", action="store_true", help="list the planted errors and exit")
    parser.add_argument("--json", type=Path, help="write the outcomes to this JSON file")
    args = parser.parse_args()
    chosen = [p for p in planted_errors.PLANTED
              if (not args.ids or p.id in args.ids) and (not args.chapter or p.chapter == args.chapter)]
    if args.list:
        for p in chosen:
            print(f"{p.id:<36} {p.target:<44} {p.description}")
        return 0
    outcomes = []
    for p in chosen:
        o = run_planted(p.id, args.scale)
        outcomes.append(o)
        print(f"{'caught ' if o.caught else 'MISSED '} {o.id:<36} {o.seconds:5.1f} s  {o.detail}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2) + "\n")
    return 0 if all(o.caught for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
