"""Numeric claims: the book's promise that every number in the prose is checked.

A chapter creates one :class:`Claims` object, records each claim with :meth:`Claims.check` (or
:meth:`Claims.check_monte_carlo`), and ends with :meth:`Claims.table`. A claim that fails raises
:class:`ClaimFailure` at once, so the cell fails and with it the book build. Every recorded claim
is also written as JSON to ``<book>/_build/claims/<chapter>.json`` (or ``$CLKIT_CLAIMS_DIR``) so
that tools can audit what the book asserts.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from .stats import monte_carlo_mean

__all__ = ["Claim", "ClaimFailure", "Claims", "claims_directory"]

Relation = Literal["==", "<=", ">="]


class ClaimFailure(AssertionError):
    """A numeric claim of the book does not hold."""


@dataclass(frozen=True)
class Claim:
    """One checked statement: ``measured`` against ``theory`` within ``tolerance``.

    ``relation`` is ``"=="`` (``|measured - theory| <= tol``), ``"<="`` (``measured <= theory + tol``,
    e.g. a bound that must hold) or ``">="`` (``measured >= theory - tol``). With ``relative=True``
    the tolerance is multiplied by ``|theory|``.
    """

    name: str
    theory: float
    measured: float
    tolerance: float
    relation: str
    relative: bool
    passed: bool
    note: str = ""

    @property
    def absolute_tolerance(self) -> float:
        return self.tolerance * abs(self.theory) if self.relative else self.tolerance

    @property
    def tolerance_text(self) -> str:
        tol = f"{self.tolerance:.2g}" + (" rel." if self.relative else "")
        return {"==": f"± {tol}", "<=": f"≤ theory + {tol}", ">=": f"≥ theory − {tol}"}[self.relation]


def _to_float(name: str, value: float | torch.Tensor) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err


def claims_directory() -> Path | None:
    """Where claim files go: ``$CLKIT_CLAIMS_DIR``, else ``_build/claims`` of the enclosing book.

    The enclosing book is the nearest directory at or above the working directory that holds both
    ``_config.yml`` and ``_toc.yml`` (Jupyter Book executes a chapter in its own folder). Outside a
    book (a notebook in Colab) the answer is ``None`` and nothing is written.
    """
    explicit = os.environ.get("CLKIT_CLAIMS_DIR")
    if explicit:
        return Path(explicit)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "_toc.yml").is_file():
            return folder / "_build" / "claims"
    return None


class Claims:
    """The claims of one chapter.

    >>> claims = Claims("example", directory=None)
    >>> claims.check("1 + 1", theory=2.0, measured=1.0 + 1.0, tolerance=0.0).passed
    True
    """

    def __init__(self, chapter: str, directory: str | Path | None | Literal["auto"] = "auto") -> None:
        if not chapter or any(sep in chapter for sep in "/\\"):
            raise ValueError(f"chapter must be a non-empty file stem, got {chapter!r}")
        self.chapter = chapter
        self.directory = claims_directory() if directory == "auto" else (Path(directory) if directory else None)
        self._claims: list[Claim] = []

    def __len__(self) -> int:
        return len(self._claims)

    @property
    def claims(self) -> tuple[Claim, ...]:
        return tuple(self._claims)

    @property
    def all_passed(self) -> bool:
        return all(c.passed for c in self._claims)

    def check(
        self,
        name: str,
        theory: float | torch.Tensor,
        measured: float | torch.Tensor,
        tolerance: float,
        *,
        relation: Relation = "==",
        relative: bool = False,
        note: str = "",
    ) -> Claim:
        """Record a claim and raise :class:`ClaimFailure` if it does not hold.

        Raises ``ValueError`` for a negative or non-finite ``tolerance``, an unknown ``relation``
        or a duplicate ``name``. A non-finite ``measured`` value fails the claim.
        """
        theory_f = _to_float("theory", theory)
        measured_f = _to_float("measured", measured)
        tol = _to_float("tolerance", tolerance)
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tolerance must be finite and >= 0, got {tol}")
        if relation not in ("==", "<=", ">="):
            raise ValueError(f"relation must be '==', '<=' or '>=', got {relation!r}")
        if any(c.name == name for c in self._claims):
            raise ValueError(f"name {name!r} is already a claim of chapter {self.chapter!r}")
        atol = tol * abs(theory_f) if relative else tol
        if not (math.isfinite(theory_f) and math.isfinite(measured_f)):
            passed = False
        elif relation == "==":
            passed = abs(measured_f - theory_f) <= atol
        elif relation == "<=":
            passed = measured_f <= theory_f + atol
        else:
            passed = measured_f >= theory_f - atol
        claim = Claim(name, theory_f, measured_f, tol, relation, relative, bool(passed), note)
        self._claims.append(claim)
        self.save()
        if not claim.passed:
            raise ClaimFailure(
                f"[{self.chapter}] claim failed: {name}: measured {measured_f:.10g}, "
                f"theory {theory_f:.10g}, tolerance {claim.tolerance_text}"
            )
        return claim

    def check_monte_carlo(
        self,
        name: str,
        theory: float | torch.Tensor,
        samples: torch.Tensor,
        *,
        n_se: float = 4.0,
        note: str = "",
    ) -> Claim:
        """Claim that the mean of i.i.d. ``samples`` equals ``theory`` within ``n_se`` standard errors.

        The tolerance is ``n_se * sd(samples) / sqrt(n)``: a correct closed form fails with
        probability about 6e-5 at the default ``n_se = 4``.
        """
        estimate = monte_carlo_mean(samples)
        note = note or f"Monte Carlo, n = {estimate.n:,}, {n_se:g} standard errors"
        return self.check(name, theory, estimate.mean, n_se * estimate.stderr, note=note)

    def to_records(self) -> list[dict[str, object]]:
        return [asdict(c) for c in self._claims]

    def save(self) -> Path | None:
        """Write the chapter's claims to ``<directory>/<chapter>.json``; return the path (or ``None``)."""
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.chapter}.json"
        payload = {"chapter": self.chapter, "all_passed": self.all_passed, "claims": self.to_records()}
        path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n", encoding="utf-8")
        return path

    def table(self) -> "ClaimsTable":
        """The claims table (claim · theory · measured · tolerance · pass), rendered as HTML in notebooks."""
        if not self._claims:
            raise ValueError(f"chapter {self.chapter!r} has recorded no claims")
        return ClaimsTable(self.claims)


def _fmt(x: float) -> str:
    if x == 0 or (1e-3 <= abs(x) < 1e4):
        return f"{x:.6g}"
    return f"{x:.4e}"


class ClaimsTable:
    """A read-only view of claims with HTML, Markdown and plain-text renderings."""

    columns = ("claim", "theory", "measured", "tolerance", "pass")

    def __init__(self, claims: tuple[Claim, ...]) -> None:
        self.claims = claims

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (c.name, _fmt(c.theory), _fmt(c.measured), c.tolerance_text, "✓" if c.passed else "✗")
            for c in self.claims
        ]

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows()
        )
        return f'<table class="clkit-claims"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines)

    def __str__(self) -> str:
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows)

    __repr__ = __str__
