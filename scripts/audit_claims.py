"""Audit the claims a build wrote.

    python scripts/audit_claims.py book/_build/claims

For every chapter in the table of contents: a claims file exists and holds at least one result or
bound; every verdict is *recomputed* from theory, measured, tolerance and relation (the stored
``passed`` field is not trusted); every claim has a known kind; no result claim has a tolerance of
at least ``|theory|`` (such a claim accepts 0 and the wrong sign); a derivation marked as proved by
SymPy is exact. Prints per chapter: results / bounds / identities / derivations (proved by SymPy,
numeric only), the median relative tolerance, and the five loosest claims. Exit status 1 on any
problem.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clkit.claims import CLAIM_KINDS, claim_passes  # noqa: E402


def toc_chapters(book: Path = REPO / "book") -> list[str]:
    """File stems of the chapters under ``chapters/`` listed in ``_toc.yml``."""
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [Path(f).stem for f in files if f.startswith("chapters/")]


def _abs_tol(c: dict) -> float:
    return c["tolerance"] * abs(c["theory"]) if c["relative"] else c["tolerance"]


def _rel_tol(c: dict) -> float | None:
    return _abs_tol(c) / abs(c["theory"]) if c["theory"] not in (0, 0.0) else None


@dataclass
class ChapterAudit:
    stem: str
    counts: dict[str, int] = field(default_factory=dict)
    proved: int = 0
    numeric_only: int = 0
    median_rel_tol: float | None = None
    loosest: list[tuple[float, str]] = field(default_factory=list)
    wide: list[str] = field(default_factory=list)  # non-result claims with tolerance >= |theory|
    problems: list[str] = field(default_factory=list)


def audit_chapter(stem: str, data: dict) -> ChapterAudit:
    report = ChapterAudit(stem)
    claims = data.get("claims", [])
    report.counts = {k: sum(c.get("kind") == k for c in claims) for k in CLAIM_KINDS}
    if report.counts["result"] + report.counts["bound"] == 0:
        report.problems.append(f"{stem}: no result or bound recorded")
    for c in claims:
        name = c.get("name", "?")
        kind = c.get("kind")
        if kind not in CLAIM_KINDS:
            report.problems.append(f"{stem}: claim {name!r} has unknown kind {kind!r}")
            continue
        verdict = claim_passes(float(c["theory"]), float(c["measured"]), float(c["tolerance"]),
                               c["relation"], bool(c["relative"]))
        if verdict != bool(c["passed"]):
            report.problems.append(f"{stem}: stored verdict of {name!r} disagrees with its numbers")
        if not verdict:
            report.problems.append(f"{stem}: claim failed: {name}")
        rel = _rel_tol(c)
        if kind == "result" and rel is not None and rel >= 1:
            report.problems.append(f"{stem}: result {name!r} has tolerance >= |theory| ({rel:.3g} x)")
        elif kind in ("bound", "identity") and rel is not None and rel >= 1:
            report.wide.append(name)
        if kind == "bound" and c["relation"] == "==":
            report.problems.append(f"{stem}: bound {name!r} has relation '=='")
        if kind == "derivation":
            if str(c.get("method", "")).startswith("sympy"):
                report.proved += 1
                if c["measured"] != 0 or c["tolerance"] != 0:
                    report.problems.append(f"{stem}: derivation {name!r} marked proved but not exact")
            else:
                report.numeric_only += 1
    rels = [(r, c["name"]) for c in claims if c.get("kind") in ("result", "bound")
            and (r := _rel_tol(c)) is not None]
    report.median_rel_tol = statistics.median(r for r, _ in rels) if rels else None
    report.loosest = sorted(rels, reverse=True)[:5]
    return report


def audit(directory: Path, verbose: bool = True) -> list[str]:
    problems: list[str] = []
    header = f"{'chapter':<22} {'results':>7} {'bounds':>6} {'ident.':>6} {'deriv.':>6} {'(SymPy/num.)':>12} {'median rel. tol':>15}"
    if verbose:
        print(header)
    loosest_lines = []
    for stem in toc_chapters():
        path = directory / f"{stem}.json"
        if not path.is_file():
            problems.append(f"{stem}: no claims file {path}")
            continue
        report = audit_chapter(stem, json.loads(path.read_text(encoding="utf-8")))
        problems += report.problems
        if verbose:
            n = report.counts
            med = f"{report.median_rel_tol:.2g}" if report.median_rel_tol is not None else "-"
            print(f"{stem:<22} {n['result']:>7} {n['bound']:>6} {n['identity']:>6} {n['derivation']:>6} "
                  f"{f'{report.proved}/{report.numeric_only}':>12} {med:>15}")
            loosest_lines.append(f"{stem}: five loosest (relative tolerance): "
                                 + "; ".join(f"{r:.2g} {name}" for r, name in report.loosest))
            if report.wide:
                loosest_lines.append(f"{stem}: bounds/identities with tolerance >= |theory|: {report.wide}")
    if verbose:
        print("\n".join(loosest_lines))
    return problems


def main() -> int:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "book" / "_build" / "claims"
    problems = audit(directory)
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
