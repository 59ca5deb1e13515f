"""Numeric claims: the book's promise that every number in the prose is checked.

A chapter creates one :class:`Claims` object, records each claim with :meth:`Claims.check` (or
:meth:`Claims.check_monte_carlo`, or a symbolic step through :mod:`clkit.symbolic`), and ends
with :meth:`Claims.table`. A claim that fails raises :class:`ClaimFailure` at once, so the cell
fails and with it the book build. Every recorded claim is also written as JSON to
``<book>/_build/claims/<chapter>.json`` (or ``$CLKIT_CLAIMS_DIR``) so that tools can audit what
the book asserts.

Every claim says what *kind* of evidence it is:

``result``
    a theorem's prediction against an independent measurement or computation (closed form
    against quadrature, theory against simulation, a located threshold against a root). Two
    independent routes, never one function compared with itself.
``bound``
    an inequality that must hold (``relation`` ``"<="`` or ``">="``).
``identity``
    algebra or code consistency (a vectorised path against a loop, a function against its
    definition); kept as a guard, not counted as evidence.
``derivation``
    an algebraic or calculus step proved by computer algebra (see :mod:`clkit.symbolic`), or,
    when SymPy cannot settle it, checked numerically and marked as such.

The headline of a chapter ("52/52 results and bounds pass") counts results and bounds; identities
and derivations are counted apart.

``CLKIT_DEFER_KINDS`` (a comma-separated list of kinds, e.g. ``derivation,identity``) makes failed
claims of those kinds be recorded (``passed: false`` in the JSON) without raising, so that a chapter
runs on to its results and bounds. ``scripts/plant_error.py --science`` uses it to learn whether a
planted error is caught by the science, not only by a re-typing of the formula; the book never
sets it.

Guards against claims that cannot fail (raised as ``ValueError`` when the claim is recorded):

* ``theory``, ``measured`` and ``tolerance`` must be real numbers (or one-element tensors);
  strings and booleans are refused.
* A claim whose absolute tolerance is at least ``|theory|`` (``theory != 0``) would accept
  ``measured = 0`` or the wrong sign; it is refused unless ``note`` says why.
* :meth:`Claims.check_monte_carlo` requires at least :data:`MONTE_CARLO_MIN_DRAWS` draws and a
  tolerance (``n_se`` standard errors) of at most :data:`MONTE_CARLO_MAX_REL_TOL` of ``|theory|``
  (or of the samples' standard deviation when ``theory == 0``): a claim must resolve the value it
  asserts, not merely fail to reject it.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .notebook import in_book
from .stats import monte_carlo_mean

__all__ = [
    "Claim",
    "ClaimFailure",
    "Claims",
    "ClaimsTable",
    "CLAIM_KINDS",
    "MONTE_CARLO_MIN_DRAWS",
    "MONTE_CARLO_MAX_REL_TOL",
    "claims_directory",
    "claim_passes",
    "deferred_kinds",
    "median_relative_tolerance",
]

Relation = Literal["==", "<=", ">="]
Kind = Literal["result", "bound", "identity", "derivation"]

#: The kinds of claim, in the order the table shows them.
CLAIM_KINDS: tuple[str, ...] = ("result", "bound", "identity", "derivation")

#: Fewest i.i.d. draws a Monte Carlo claim may rest on. Below a thousand draws the sample standard
#: deviation (and so the tolerance) is itself too noisy for "4 standard errors" to mean a
#: false-alarm rate of 6e-5, and heavy-tailed integrands are not yet in the CLT regime.
MONTE_CARLO_MIN_DRAWS: int = 1000

#: Largest tolerance of a Monte Carlo claim relative to ``|theory|`` (or to the samples' standard
#: deviation when ``theory == 0``). A claim whose band is wider than 10 % of the value it asserts
#: cannot tell that value from a neighbour 10 % away; use more draws or an exact method.
MONTE_CARLO_MAX_REL_TOL: float = 0.1


class ClaimFailure(AssertionError):
    """A numeric claim of the book does not hold."""


def deferred_kinds() -> frozenset[str]:
    """The kinds whose failures are recorded but not raised (``$CLKIT_DEFER_KINDS``; empty by default).

    Raises ``ValueError`` if the variable names a kind that is not in :data:`CLAIM_KINDS`.
    """
    names = {k.strip() for k in os.environ.get("CLKIT_DEFER_KINDS", "").split(",") if k.strip()}
    unknown = names - set(CLAIM_KINDS)
    if unknown:
        raise ValueError(f"CLKIT_DEFER_KINDS names unknown kinds {sorted(unknown)}; known: {CLAIM_KINDS}")
    return frozenset(names)


def claim_passes(theory: float, measured: float, tolerance: float, relation: str, relative: bool) -> bool:
    """Whether ``measured`` stands in ``relation`` to ``theory`` within ``tolerance``.

    ``"=="``: ``|measured - theory| <= tol``; ``"<="``: ``measured <= theory + tol``; ``">="``:
    ``measured >= theory - tol``; ``tol`` is multiplied by ``|theory|`` when ``relative``. Non-finite
    values never pass. The audit recomputes every stored verdict with this function.
    """
    atol = tolerance * abs(theory) if relative else tolerance
    if not (math.isfinite(theory) and math.isfinite(measured) and math.isfinite(atol)):
        return False
    if relation == "==":
        return abs(measured - theory) <= atol
    if relation == "<=":
        return measured <= theory + atol
    if relation == ">=":
        return measured >= theory - atol
    raise ValueError(f"relation must be '==', '<=' or '>=', got {relation!r}")


@dataclass(frozen=True)
class Claim:
    """One checked statement: ``measured`` against ``theory`` within ``tolerance``.

    ``relation`` is ``"=="`` (``|measured - theory| <= tol``), ``"<="`` (``measured <= theory + tol``,
    e.g. a bound that must hold) or ``">="`` (``measured >= theory - tol``). With ``relative=True``
    the tolerance is multiplied by ``|theory|``. ``kind`` is one of :data:`CLAIM_KINDS`; ``method``
    says how a derivation was settled (``"sympy: …"`` or ``"numeric: …"``), ``latex`` holds the
    step it proves.
    """

    name: str
    theory: float
    measured: float
    tolerance: float
    relation: str
    relative: bool
    passed: bool
    note: str = ""
    kind: str = "result"
    method: str = ""
    latex: str = ""

    @property
    def absolute_tolerance(self) -> float:
        return self.tolerance * abs(self.theory) if self.relative else self.tolerance

    @property
    def relative_tolerance(self) -> float | None:
        """Absolute tolerance over ``|theory|`` (``None`` when ``theory == 0``)."""
        return self.absolute_tolerance / abs(self.theory) if self.theory != 0 else None

    @property
    def proved(self) -> bool:
        """A derivation settled by computer algebra (not by a numeric fallback)."""
        return self.kind == "derivation" and self.method.startswith("sympy")

    @property
    def tolerance_text(self) -> str:
        if self.kind == "derivation":
            return "exact" if self.proved else f"± {self.tolerance:.1g} (numeric)"
        if self.tolerance == 0:
            return {"==": "exact", "<=": "≤ theory", ">=": "≥ theory"}[self.relation]
        tol = f"{self.tolerance:.2g}" + (" rel." if self.relative else "")
        return {"==": f"± {tol}", "<=": f"≤ theory + {tol}", ">=": f"≥ theory − {tol}"}[self.relation]

    def _ipython_display_(self) -> None:
        """A claim is bookkeeping: it shows in the claims table, not as a cell's output."""


def _to_float(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        if value.dtype == torch.bool:
            raise ValueError(f"{name} must be a real number, got a boolean tensor")
        value = value.item()
    if isinstance(value, (bool, str, bytes, np.bool_)):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not isinstance(value, numbers.Real) and not hasattr(value, "__float__"):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
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
    >>> claims.check("1 + 1", theory=2.0, measured=1.0 + 1.0, tolerance=0.0, kind="identity").passed
    True
    """

    def __init__(self, chapter: str, directory: str | Path | None | Literal["auto"] = "auto") -> None:
        if not chapter or any(sep in chapter for sep in "/\\"):
            raise ValueError(f"chapter must be a non-empty file stem, got {chapter!r}")
        self.chapter = chapter
        self.directory = claims_directory() if directory == "auto" else (Path(directory) if directory else None)
        self._claims: list[Claim] = []
        self._encoded: list[str] = []  # JSON of each claim, in order (see save)

    def __len__(self) -> int:
        return len(self._claims)

    def __repr__(self) -> str:
        return f"Claims({self.chapter!r}: {self.summary()})"

    @property
    def claims(self) -> tuple[Claim, ...]:
        return tuple(self._claims)

    @property
    def all_passed(self) -> bool:
        return all(c.passed for c in self._claims)

    def count(self, kind: str) -> int:
        if kind not in CLAIM_KINDS:
            raise ValueError(f"kind must be one of {CLAIM_KINDS}, got {kind!r}")
        return sum(c.kind == kind for c in self._claims)

    def summary(self) -> str:
        """One line: ``"48 results and bounds: all pass · 4 identities · 12 derivations (11 proved)"``."""
        return _summary(self._claims)

    def check(
        self,
        name: str,
        theory: float | torch.Tensor,
        measured: float | torch.Tensor,
        tolerance: float,
        *,
        kind: Kind,
        relation: Relation = "==",
        relative: bool = False,
        note: str = "",
        method: str = "",
        latex: str = "",
    ) -> Claim:
        """Record a claim and raise :class:`ClaimFailure` if it does not hold.

        ``kind`` is required (see the module docstring); a ``bound`` needs ``relation`` ``"<="`` or
        ``">="``. Raises ``ValueError`` for a non-numeric ``theory``/``measured``/``tolerance``, a
        negative or non-finite ``tolerance``, an unknown ``relation`` or ``kind``, a duplicate
        ``name``, or a tolerance of at least ``|theory|`` without a ``note`` saying why. A
        non-finite ``measured`` value fails the claim.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if kind not in CLAIM_KINDS:
            raise ValueError(f"kind must be one of {CLAIM_KINDS}, got {kind!r}")
        if relation not in ("==", "<=", ">="):
            raise ValueError(f"relation must be '==', '<=' or '>=', got {relation!r}")
        if kind == "bound" and relation == "==":
            raise ValueError(f"a bound needs relation '<=' or '>=' (claim {name!r})")
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be a bool, got {relative!r}")
        theory_f = _to_float("theory", theory)
        measured_f = _to_float("measured", measured)
        tol = _to_float("tolerance", tolerance)
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tolerance must be finite and >= 0, got {tol}")
        if not math.isfinite(theory_f):
            raise ValueError(f"theory must be finite, got {theory_f} (claim {name!r})")
        if any(c.name == name for c in self._claims):
            raise ValueError(f"name {name!r} is already a claim of chapter {self.chapter!r}")
        atol = tol * abs(theory_f) if relative else tol
        if theory_f != 0 and atol >= abs(theory_f) and not note.strip():
            raise ValueError(
                f"tolerance {atol:.3g} is at least |theory| = {abs(theory_f):.3g} (claim {name!r}): such a "
                "claim accepts 0 and the wrong sign; tighten it or say why in note"
            )
        passed = claim_passes(theory_f, measured_f, tol, relation, relative)
        claim = Claim(name, theory_f, measured_f, tol, relation, relative, bool(passed), note, kind, method, latex)
        self._claims.append(claim)
        self.save()
        if not claim.passed and kind not in deferred_kinds():
            raise ClaimFailure(
                f"[{self.chapter}] {kind} claim failed: {name}: measured {measured_f:.10g}, "
                f"theory {theory_f:.10g}, tolerance {claim.tolerance_text}"
            )
        return claim

    def check_monte_carlo(
        self,
        name: str,
        theory: float | torch.Tensor,
        samples: torch.Tensor,
        *,
        kind: Kind = "result",
        n_se: float = 4.0,
        relation: Relation = "==",
        note: str = "",
    ) -> Claim:
        """Claim that the mean of i.i.d. ``samples`` equals ``theory`` within ``n_se`` standard errors.

        The tolerance is ``n_se * sd(samples) / sqrt(n)``: a correct closed form fails with
        probability about 6e-5 at the default ``n_se = 4``. Raises ``ValueError`` when the samples
        are fewer than :data:`MONTE_CARLO_MIN_DRAWS`, or when the tolerance exceeds
        :data:`MONTE_CARLO_MAX_REL_TOL` times ``|theory|`` (times the samples' standard deviation
        when ``theory == 0``): such a claim could not tell the theory from a wrong neighbour.
        Draws must be independent of the draws of any other claim that is meant as separate
        evidence.
        """
        if not (isinstance(n_se, (int, float)) and not isinstance(n_se, bool) and n_se >= 1):
            raise ValueError(f"n_se must be a number >= 1, got {n_se!r}")
        estimate = monte_carlo_mean(samples)
        if estimate.n < MONTE_CARLO_MIN_DRAWS:
            raise ValueError(
                f"samples: a Monte Carlo claim needs at least {MONTE_CARLO_MIN_DRAWS} draws, got {estimate.n} "
                f"(claim {name!r})"
            )
        theory_f = _to_float("theory", theory)
        tol = n_se * estimate.stderr
        scale = abs(theory_f) if theory_f != 0 else estimate.stderr * math.sqrt(estimate.n)
        if tol > MONTE_CARLO_MAX_REL_TOL * scale:
            what = "|theory|" if theory_f != 0 else "the samples' standard deviation"
            raise ValueError(
                f"samples: {n_se:g} standard errors = {tol:.3g} exceed {MONTE_CARLO_MAX_REL_TOL:g} x {what} "
                f"= {MONTE_CARLO_MAX_REL_TOL * scale:.3g} (claim {name!r}); use more draws"
            )
        auto = f"Monte Carlo, n = {estimate.n:,}, {n_se:g} standard errors (se = {estimate.stderr:.2g})"
        note = f"{note}; {auto}" if note else auto
        if relation == "==" and kind == "bound":
            raise ValueError(f"a bound needs relation '<=' or '>=' (claim {name!r})")
        return self.check(name, theory_f, estimate.mean, tol, kind=kind, relation=relation, note=note)

    def to_records(self) -> list[dict[str, object]]:
        return [asdict(c) for c in self._claims]

    def save(self) -> Path | None:
        """Write the chapter's claims to ``<directory>/<chapter>.json``; return the path (or ``None``)."""
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.chapter}.json"
        head = {
            "chapter": self.chapter,
            "all_passed": self.all_passed,
            "summary": self.summary(),
            "counts": {k: self.count(k) for k in CLAIM_KINDS},
        }
        # One claim per line, each encoded once and kept: the file is rewritten after every
        # claim (so a failing chapter leaves its claims so far), and re-encoding every record
        # with ``indent`` (pure-Python encoder) made saving quadratic in the number of claims.
        while len(self._encoded) < len(self._claims):
            self._encoded.append(json.dumps(asdict(self._claims[len(self._encoded)]), allow_nan=True))
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items())
        body = ",\n    ".join(self._encoded)
        text = f"{{\n{lines},\n  \"claims\": [\n    {body}\n  ]\n}}\n" if self._encoded else \
            f"{{\n{lines},\n  \"claims\": []\n}}\n"
        path.write_text(text, encoding="utf-8")
        return path

    def table(self, *, json_url: str | None = None, open_: bool = False) -> "ClaimsTable":
        """The claims table (claim · kind · theory · measured · tolerance · pass).

        In HTML it is a collapsible block behind a one-line summary; claim names may contain
        ``$…$`` math, which the book typesets. ``json_url`` adds a link to the chapter's claims
        file (by default ``../claims/<chapter>.json``, where the book publishes it).
        """
        if not self._claims:
            raise ValueError(f"chapter {self.chapter!r} has recorded no claims")
        url = json_url if json_url is not None else f"../claims/{self.chapter}.json"
        return ClaimsTable(self.claims, json_url=url, open_=open_)


def _fmt(x: float) -> str:
    if x == 0 or (1e-3 <= abs(x) < 1e4):
        return f"{x:.6g}"
    return f"{x:.4e}"


def _summary(claims: list[Claim] | tuple[Claim, ...]) -> str:
    evidence = [c for c in claims if c.kind in ("result", "bound")]
    n_res = sum(c.kind == "result" for c in claims)
    n_bound = sum(c.kind == "bound" for c in claims)
    failed = [c for c in claims if not c.passed]
    parts = []
    head = f"{n_res} result{'s' * (n_res != 1)}, {n_bound} bound{'s' * (n_bound != 1)}"
    ok = sum(c.passed for c in evidence)
    parts.append(f"{head}: " + ("all pass" if ok == len(evidence) else f"{ok}/{len(evidence)} pass"))
    n_id = sum(c.kind == "identity" for c in claims)
    if n_id:
        parts.append(f"{n_id} identit{'ies' if n_id != 1 else 'y'} (guards)")
    derivations = [c for c in claims if c.kind == "derivation"]
    if derivations:
        proved = sum(c.proved and c.passed for c in derivations)
        numeric = len(derivations) - sum(c.proved for c in derivations)
        text = f"{len(derivations)} derivation step{'s' * (len(derivations) != 1)} ({proved} proved by SymPy"
        text += f", {numeric} checked numerically only)" if numeric else ")"
        parts.append(text)
    if failed:
        parts.append(f"FAILED: {', '.join(c.name for c in failed)}")
    return " · ".join(parts)


_MATH = re.compile(r"\$([^$]+)\$|`([^`]+)`")


def _html_with_math(text: str) -> str:
    """Escape ``text`` for HTML, turning ``$…$`` into spans that the book's MathJax typesets and
    ```…``` into code."""
    out, last = [], 0
    for m in _MATH.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        if m.group(1) is not None:
            out.append(f'<span class="math notranslate nohighlight">\\({html.escape(m.group(1))}\\)</span>')
        else:
            out.append(f"<code>{html.escape(m.group(2))}</code>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _markdown_cell(text: str) -> str:
    """``text`` for one cell of a Markdown table: ``|`` inside ``$…$`` as ``\\vert`` (``\\|`` as
    ``\\Vert``), elsewhere escaped as ``\\|``."""
    out, last = [], 0
    for m in re.finditer(r"\$([^$]+)\$", text):
        out.append(text[last:m.start()].replace("|", "\\|"))
        math = m.group(1).replace("\\|", "\\Vert ").replace("|", "\\vert ")
        out.append(f"${math}$")
        last = m.end()
    out.append(text[last:].replace("|", "\\|"))
    return "".join(out)


_CSS = """<style>
details.clkit-claims{margin:1em 0;border:1px solid #d0d7de;border-radius:6px;padding:.4em .8em}
details.clkit-claims summary{cursor:pointer;font-weight:600}
.clkit-claims-scroll{overflow-x:auto;max-width:100%}
table.clkit-claims{border-collapse:collapse;margin:.6em 0;font-size:.9em}
table.clkit-claims th,table.clkit-claims td{padding:.25em .7em;border-bottom:1px solid #e5e7eb;vertical-align:top}
table.clkit-claims th{text-align:left;border-bottom:2px solid #9ca3af}
table.clkit-claims td.num{text-align:right;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:nowrap;font-size:.92em}
table.clkit-claims td:first-child{min-width:12em}
table.clkit-claims td.kind{color:#57606a;font-size:.85em}
table.clkit-claims tr.kind-head td{font-weight:600;background:#f6f8fa}
table.clkit-claims td.pass{text-align:center}
</style>"""


class ClaimsTable:
    """A read-only view of claims with HTML, Markdown and plain-text renderings."""

    columns = ("claim", "kind", "theory", "measured", "tolerance", "pass")

    def __init__(self, claims: tuple[Claim, ...], *, json_url: str | None = None, open_: bool = False) -> None:
        self.claims = claims
        self.json_url = json_url
        self.open = open_

    @property
    def summary(self) -> str:
        return _summary(self.claims)

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        ordered = sorted(self.claims, key=lambda c: CLAIM_KINDS.index(c.kind))
        out = []
        for c in ordered:
            if c.kind == "derivation":
                theory, measured = (c.latex and "see step") or "0", _fmt(c.measured)
            else:
                theory, measured = _fmt(c.theory), _fmt(c.measured)
            out.append((c.name, c.kind, theory, measured, c.tolerance_text, "✓" if c.passed else "✗"))
        return out

    def _repr_html_(self) -> str | None:
        """The collapsible HTML table, inside the book only: its ``\\( \\)`` math is typeset by the
        book's MathJax, which a notebook's HTML output does not get (``None``: Markdown instead)."""
        if not in_book():
            return None
        head = "".join(f"<th>{h}</th>" for h in self.columns)
        body, current = [], None
        for row in self.rows():
            if row[1] != current:
                current = row[1]
                body.append(f'<tr class="kind-head"><td colspan="{len(self.columns)}">{current}s</td></tr>')
            name, kind, theory, measured, tol, ok = row
            body.append(
                f"<tr><td>{_html_with_math(name)}</td><td class=\"kind\">{kind}</td><td class=\"num\">{html.escape(theory)}</td>"
                f"<td class=\"num\">{html.escape(measured)}</td><td class=\"num\">{html.escape(tol)}</td>"
                f"<td class=\"pass\">{ok}</td></tr>"
            )
        link = (
            f' · <a href="{html.escape(self.json_url)}">claims as JSON</a>' if self.json_url else ""
        )
        opened = " open" if self.open else ""
        return (
            f'{_CSS}<details class="clkit-claims"{opened}><summary>Claims: {html.escape(self.summary)}</summary>'
            f'<div class="clkit-claims-scroll"><table class="clkit-claims"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div><p>{link.lstrip(' ·')}</p></details>"
        )

    def _repr_markdown_(self) -> str:
        """A Markdown table (what a notebook shows outside the book, and the PDF): ``$…$`` math is
        kept for the notebook's MathJax, with its bars written ``\\vert``/``\\Vert`` so that they
        cannot split a table cell; bars outside math are escaped."""
        lines = [f"**Claims:** {_markdown_cell(self.summary)}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in self.rows()]
        return "\n".join(lines)

    def __str__(self) -> str:
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = [self.summary, *("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows)]
        return "\n".join(lines)

    __repr__ = __str__


def median_relative_tolerance(claims: list[Claim] | tuple[Claim, ...]) -> float | None:
    """Median of absolute tolerance / |theory| over claims with ``theory != 0`` (``None`` if none)."""
    values = [c.relative_tolerance for c in claims if c.relative_tolerance is not None and c.kind != "derivation"]
    return statistics.median(values) if values else None
