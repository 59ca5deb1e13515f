"""Audit the claims a build wrote: every chapter in the table of contents has a claims file, each
file holds at least one claim, and every claim passed.

    python scripts/audit_claims.py book/_build/claims
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def toc_chapters(book: Path = REPO / "book") -> list[str]:
    """File stems of the chapters under ``chapters/`` listed in ``_toc.yml``."""
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [Path(f).stem for f in files if f.startswith("chapters/")]


def audit(directory: Path) -> list[str]:
    problems: list[str] = []
    for stem in toc_chapters():
        path = directory / f"{stem}.json"
        if not path.is_file():
            problems.append(f"{stem}: no claims file {path}")
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        claims = data.get("claims", [])
        if not claims:
            problems.append(f"{stem}: no claims recorded")
        problems += [f"{stem}: claim failed: {c['name']}" for c in claims if not c["passed"]]
        print(f"{stem:<28} {len(claims):3d} claims, {sum(c['passed'] for c in claims):3d} passed")
    return problems


def main() -> int:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "book" / "_build" / "claims"
    problems = audit(directory)
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
