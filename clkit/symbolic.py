"""Derivation steps checked by computer algebra (SymPy), recorded as claims of kind ``derivation``.

Each function states one step of a derivation, asks SymPy to settle it, records the outcome in a
:class:`~clkit.claims.Claims` object and returns a :class:`DerivationStep`, which a notebook shows
as the step in LaTeX with how it was settled.

* :func:`derive_equal` -- ``lhs == rhs`` (scalars or matrices): proved when a chain of targeted
  simplifications (expand, cancel, together, trigsimp, simplify; in that order, cheapest first)
  reduces ``lhs - rhs`` to 0.
* :func:`derive_series` -- ``expr = expected + O((var - point)**order)``: proved when the series of
  ``expr - expected`` to that order vanishes; ``sharp=True`` also proves the remainder's leading
  coefficient is not 0 (the order is exact, not merely an upper bound).
* :func:`derive_limit` -- ``lim_{var -> point} expr = expected``.
* :func:`derive_sign` -- ``expr > 0`` (or ``< 0``, ``>= 0``, ``<= 0``) for ``var`` in an interval:
  proved by SymPy's assumptions or by solving the opposite inequality on the interval.

A step SymPy cannot settle is **never** counted as proved: it is evaluated at random points of
``domain`` (30-digit arithmetic through mpmath), recorded with ``method="numeric: …"`` and fails
as a claim if the numeric check fails. A step that SymPy *refutes* (a nonzero simplified
difference with a numeric witness) fails at once.

The formulas of the book live in clkit as functions that accept SymPy symbols as well as numbers
(plain arithmetic; :func:`is_symbolic` tells a formula to use SymPy's functions), so that a wrong coefficient planted in clkit
fails the chapter's symbolic check too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .claims import Claim, Claims

__all__ = ["MAX_DISPLAY_LATEX", "DerivationStep", "derive_equal", "derive_series", "derive_limit", "derive_sign", "is_symbolic"]

_NUMERIC_POINTS = 24
_NUMERIC_DIGITS = 30
_NUMERIC_TOL = 1e-20
#: |lhs - rhs| at one random point (30 digits) above which a step is false without further ado.
_FALSE_AT_A_POINT = 1e-10


def _sympy():
    import sympy

    return sympy


def is_symbolic(*values: Any) -> bool:
    """True when any value is a SymPy expression or matrix (clkit formulas then compute with SymPy)."""
    try:
        import sympy
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(v, (sympy.Basic, sympy.MatrixBase)) for v in values)


#: A step whose LaTeX is longer than this is shown by its name, not its full expression (an
#: expanded matrix entry or a series can run to thousands of pixels); the full LaTeX stays in the
#: claim (``Claim.latex``) and in the claims JSON.
MAX_DISPLAY_LATEX = 260


def _name_to_latex(name: str) -> str:
    """``"a $x$ b"`` -> ``"\\text{a }x\\text{ b}"``: a claim name with inline math, as display LaTeX."""
    parts = name.split("$")
    out = []
    for k, part in enumerate(parts):
        if not part:
            continue
        out.append(part if k % 2 else "\\text{" + part.replace("{", "\\{").replace("}", "\\}") + "}")
    return "".join(out)


@dataclass(frozen=True)
class DerivationStep:
    """A recorded derivation step: its LaTeX, whether SymPy proved it, and how."""

    name: str
    latex: str
    proved: bool
    method: str
    claim: Claim

    @property
    def display_latex(self) -> str:
        """The step itself when short, else its name (the full LaTeX is in :attr:`latex`)."""
        return self.latex if len(self.latex) <= MAX_DISPLAY_LATEX else _name_to_latex(self.name)

    def _repr_latex_(self) -> str:
        mark = r"\checkmark\ \text{SymPy}" if self.proved else r"\text{numeric only}"
        return f"$$ {self.display_latex} \\qquad [{mark}] $$"

    def __repr__(self) -> str:
        return f"{'proved' if self.proved else 'NOT proved (numeric)'}: {self.name} [{self.method}]"


def _free_symbols(*exprs: Any) -> list[Any]:
    sp = _sympy()
    symbols: set[Any] = set()
    for e in exprs:
        if isinstance(e, sp.MatrixBase):
            for entry in e:
                symbols |= entry.free_symbols
        elif isinstance(e, sp.Basic):
            symbols |= e.free_symbols
    return sorted(symbols, key=lambda s: s.name)


def _sample_point(symbols: list[Any], domain: Mapping[Any, tuple[float, float]] | None, rng: random.Random) -> dict:
    sp = _sympy()
    point = {}
    for s in symbols:
        lo, hi = (domain or {}).get(s, (0.1, 3.0) if s.is_positive else (-2.0, 2.0))
        # a random rational point: exact input, so the only error is the evaluation's own.
        point[s] = sp.Rational(round(rng.uniform(lo, hi) * 10**6), 10**6)
    return point


def _numeric_residual(diff: Any, domain: Mapping[Any, tuple[float, float]] | None, seed: int = 0,
                      n_points: int = _NUMERIC_POINTS) -> float:
    """Largest |diff| over ``n_points`` random points of ``domain`` (evaluated to 30 digits by
    ``evalf(subs=...)``, never by exact substitution, whose rationals can grow without bound);
    ``inf`` if it cannot be evaluated."""
    sp = _sympy()
    rng = random.Random(seed)
    entries = list(diff) if isinstance(diff, sp.MatrixBase) else [diff]
    symbols = _free_symbols(*entries)
    worst = 0.0
    for _ in range(n_points):
        point = _sample_point(symbols, domain, rng)
        for e in entries:
            value = sp.sympify(e).evalf(_NUMERIC_DIGITS, subs=point)
            try:
                v = abs(complex(value))
            except TypeError:
                return math.inf
            worst = max(worst, v)
    return worst


def _reduces_to_zero(diff: Any, extra: Iterable[Any] = ()) -> tuple[bool, str]:
    """Try targeted simplifications, cheapest first; return (proved, which one)."""
    sp = _sympy()
    entries = list(diff) if isinstance(diff, sp.MatrixBase) else [diff]
    steps = [
        ("expand", sp.expand),
        # e = n/d over a common denominator, and n expands to 0: cheaper than cancel, which also
        # factors the denominator
        ("numerator", lambda e: sp.expand(sp.numer(sp.together(e)))),
        ("cancel", sp.cancel),
        ("together+expand", lambda e: sp.expand(sp.together(e))),
        ("expand_log+expand", lambda e: sp.expand(sp.expand_log(e, force=True))),
        ("trigsimp", sp.trigsimp),
        ("powsimp+radsimp", lambda e: sp.radsimp(sp.powsimp(sp.expand(e), force=True))),
        *extra,  # the caller's targeted rewrites before the generic (and costly) simplify
        ("simplify", sp.simplify),
    ]
    remaining = [sp.sympify(e) for e in entries]
    used: list[str] = []
    for label, fn in steps:
        nxt = []
        for e in remaining:
            r = fn(e)
            if r != 0:
                nxt.append(r)
        if len(nxt) < len(remaining) or not nxt:
            used.append(label)
        remaining = nxt
        if not remaining:
            return True, "+".join(dict.fromkeys(used)) or "expand"
    return False, ""


#: Functions analytic in the interior of their domain: for an expression built from these (and
#: +, *, powers), finite derivatives at the point mean the Taylor coefficients are the series'.
_ANALYTIC_FUNCTIONS = ("exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos",
                       "atan", "asinh", "acosh", "atanh", "erf", "erfc")


def _taylor_coefficients(expr: Any, var: Any, point: Any, order: int) -> list[Any] | None:
    """Taylor coefficients ``f^(k)(point)/k!`` for ``k = 0..order`` of ``expr`` in ``var``.

    Used by :func:`derive_series` instead of ``sympy.series`` when it is valid: ``expr`` is built
    from ``+``, ``*``, powers and the functions of ``_ANALYTIC_FUNCTIONS`` only (no ``Abs``,
    ``Piecewise``, ``sign``, ...), the point is finite, and every derivative up to ``order``
    (inclusive) evaluates to a finite number or expression at the point. Then ``expr`` is ``order``
    times continuously differentiable at the point, and Taylor's theorem gives ``expr = sum_{k<order}
    c_k (var-point)^k + O((var-point)^order)`` with these ``c_k``; a branch point or a removable
    singularity at the point shows up as an infinite or undefined derivative (``sqrt(var)``,
    ``log(var)``, ``sin(var)/var`` at 0) and returns ``None``: the caller falls back to
    ``sympy.series``.
    """
    sp = _sympy()
    if isinstance(expr, sp.MatrixBase) or not sp.sympify(point).is_finite:
        return None
    for f in expr.atoms(sp.Function):
        if type(f).__name__ not in _ANALYTIC_FUNCTIONS:
            return None
    if expr.has(sp.Derivative, sp.Integral, sp.Subs, sp.Sum, sp.Product):
        return None
    out: list[Any] = []
    d = expr
    for k in range(order + 1):
        if k:
            d = sp.diff(d, var)
        value = d.subs(var, point)
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo) or value.has(sp.Subs, sp.Derivative):
            return None
        out.append(value / math.factorial(k))
    return out


def _record(
    claims: Claims, name: str, latex: str, proved: bool, method: str, residual: float, note: str
) -> DerivationStep:
    if proved:
        claim = claims.check(name, 0.0, 0.0, 0.0, kind="derivation", method=f"sympy: {method}", latex=latex,
                             note=note)
    else:
        claim = claims.check(name, 0.0, residual, _NUMERIC_TOL, kind="derivation", latex=latex, note=note,
                             method=f"numeric: SymPy could not settle; max |residual| at {_NUMERIC_POINTS} random "
                                    f"points, {_NUMERIC_DIGITS} digits")
    return DerivationStep(name, latex, proved, claim.method, claim)


def derive_equal(
    claims: Claims,
    name: str,
    lhs: Any,
    rhs: Any,
    *,
    domain: Mapping[Any, tuple[float, float]] | None = None,
    simplifiers: Iterable[tuple[str, Any]] = (),
    note: str = "",
) -> DerivationStep:
    """Prove ``lhs == rhs`` with SymPy and record it as a ``derivation`` claim.

    ``domain`` maps symbols to intervals for the numeric fallback (default: (0.1, 3) for positive
    symbols, (-2, 2) otherwise); ``simplifiers`` adds ``(label, function)`` pairs, tried after the
    built-in chain's targeted steps and before the generic ``simplify``. Raises :class:`~clkit.claims.ClaimFailure` when the step is false at a
    numeric point, ``ValueError`` when ``lhs`` and ``rhs`` have different shapes.
    """
    sp = _sympy()
    lhs_s, rhs_s = sp.sympify(lhs), sp.sympify(rhs)
    if isinstance(lhs_s, sp.MatrixBase) != isinstance(rhs_s, sp.MatrixBase) or (
        isinstance(lhs_s, sp.MatrixBase) and lhs_s.shape != rhs_s.shape
    ):
        raise ValueError(f"lhs and rhs must have the same shape (step {name!r})")
    latex = f"{sp.latex(lhs_s)} = {sp.latex(rhs_s)}"
    diff = lhs_s - rhs_s
    # A false step shows at a random point: then no simplification is tried (on a large false
    # expression SymPy's generic simplify can run for minutes), and the point is the evidence.
    at_a_point = _numeric_residual(diff, domain, n_points=1)
    if math.isfinite(at_a_point) and at_a_point > _FALSE_AT_A_POINT:
        return _record(claims, name, latex, False, "", _numeric_residual(diff, domain), note)
    proved, method = _reduces_to_zero(diff, simplifiers)
    residual = 0.0 if proved else _numeric_residual(diff, domain)
    return _record(claims, name, latex, proved, method, residual, note)


def derive_series(
    claims: Claims,
    name: str,
    expr: Any,
    var: Any,
    expected: Any,
    order: int,
    *,
    point: Any = 0,
    sharp: bool = False,
    domain: Mapping[Any, tuple[float, float]] | None = None,
    note: str = "",
) -> DerivationStep:
    """Prove ``expr = expected + O((var - point)**order)`` (and, with ``sharp``, not ``o(...)``).

    The series of ``expr - expected`` in ``var`` about ``point`` is taken to ``order``; each of its
    coefficients below ``order`` must simplify to 0. With ``sharp=True`` the coefficient of
    ``(var - point)**order`` must also be provably nonzero (so the stated order is the true one).
    """
    sp = _sympy()
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    expr_s, expected_s = sp.sympify(expr), sp.sympify(expected)
    o_text = sp.latex(sp.Order((var - point) ** order, (var, point)))
    latex = f"{sp.latex(expr_s)} = {sp.latex(expected_s)} + {o_text}"
    diff = expr_s - expected_s
    x = var - point
    taylor = _taylor_coefficients(diff, var, point, order)
    if taylor is not None:  # derivatives at the point (sp.series is the fallback)
        coeffs, lead_raw = taylor[:order], taylor[order]
        method = f"Taylor coefficients to order {order}"
    else:
        poly = sp.series(diff, var, point, order + (1 if sharp else 0)).removeO()
        coeffs = [poly.coeff(x, k) if k else poly.subs(var, point) for k in range(order)]
        lead_raw = sp.expand(poly).coeff(x, order) if sharp else None
        method = f"series to order {order}"
        # what the integer-power coefficients miss (sqrt(x), x log x, ...) must itself be O(x^order)
        rest = sp.expand(poly - sum(c * x**k for k, c in enumerate(coeffs)))
        if rest != 0 and sp.Order(x**order, (var, point)).contains(rest) is not True:
            return _record(claims, name, latex, False, method, math.inf,
                           note or f"terms below order {order} that are not integer powers: "
                                   f"{sp.latex(rest)}")
    # each coefficient through the cheapest-first chain of _reduces_to_zero (``simplify`` last)
    proved = all(_reduces_to_zero(c)[0] for c in coeffs)
    if proved and sharp:
        lead = sp.simplify(lead_raw)
        nonzero = lead.is_nonzero if lead.is_nonzero is not None else (sp.simplify(lead) != 0 and lead.is_number)
        if not nonzero:
            proved = False
        method += f"; leading remainder coefficient {sp.latex(lead)} ≠ 0"
    residual = 0.0
    if not proved:
        # Numeric fallback: (expr - expected)/x^order must stay bounded as x -> 0 at sample points;
        # measured as the truncated coefficients' size at random parameter values.
        residual = max((_numeric_residual(c, domain) for c in coeffs), default=math.inf)
        if sharp and residual <= _NUMERIC_TOL:
            residual = math.inf  # sharpness could not be shown
    return _record(claims, name, latex, proved, method, residual, note)


def derive_limit(
    claims: Claims,
    name: str,
    expr: Any,
    var: Any,
    point: Any,
    expected: Any,
    *,
    direction: str = "+",
    domain: Mapping[Any, tuple[float, float]] | None = None,
    note: str = "",
) -> DerivationStep:
    """Prove ``lim_{var -> point} expr = expected`` (``direction`` ``"+"``, ``"-"`` or ``"+-"``)."""
    sp = _sympy()
    expr_s, expected_s = sp.sympify(expr), sp.sympify(expected)
    arrow = r"\to"
    latex = f"\\lim_{{{sp.latex(var)} {arrow} {sp.latex(point)}}} {sp.latex(expr_s)} = {sp.latex(expected_s)}"
    proved, method, residual = False, "", math.inf
    try:
        value = sp.limit(expr_s, var, point, dir=direction)
        if not isinstance(value, sp.Limit) and not value.has(sp.AccumBounds):
            proved, method = _reduces_to_zero(sp.sympify(value) - expected_s)
            method = f"limit; {method}" if proved else ""
            if not proved:
                residual = _numeric_residual(sp.sympify(value) - expected_s, domain)
    except (NotImplementedError, ValueError, TypeError):  # SymPy gave up
        pass
    return _record(claims, name, latex, proved, method, 0.0 if proved else residual, note)


def derive_sign(
    claims: Claims,
    name: str,
    expr: Any,
    var: Any,
    interval: tuple[Any, Any],
    sign: str,
    *,
    note: str = "",
) -> DerivationStep:
    """Prove that ``expr`` has ``sign`` (``">0"``, ``"<0"``, ``">=0"``, ``"<=0"``) for ``var`` in the open ``interval``.

    Proved by the solution set of the opposite inequality on the interval being empty. Not settled:
    the sign is checked on a 2001-point grid (30 digits) and recorded as numeric only.
    """
    sp = _sympy()
    ops = {">0": (sp.Gt, sp.Le), "<0": (sp.Lt, sp.Ge), ">=0": (sp.Ge, sp.Lt), "<=0": (sp.Le, sp.Gt)}
    if sign not in ops:
        raise ValueError(f"sign must be one of {tuple(ops)}, got {sign!r}")
    expr_s = sp.sympify(expr)
    lo, hi = interval
    region = sp.Interval.open(lo, hi)
    rel = {">0": ">", "<0": "<", ">=0": r"\ge", "<=0": r"\le"}[sign]
    latex = f"{sp.latex(expr_s)} {rel} 0 \\quad ({sp.latex(var)} \\in {sp.latex(region)})"
    proved, method, residual = False, "", 0.0
    try:
        bad = sp.solveset(ops[sign][1](expr_s, 0), var, region)
        if bad == sp.S.EmptySet:
            proved, method = True, "solveset: the opposite inequality has no solution on the interval"
    except (NotImplementedError, ValueError, TypeError):
        pass
    if not proved:
        lo_f = float(lo) if lo not in (-sp.oo,) else -50.0
        hi_f = float(hi) if hi not in (sp.oo,) else 50.0
        worst = 0.0
        for k in range(1, 2002):
            t = sp.Rational(round((lo_f + (hi_f - lo_f) * k / 2002) * 10**6), 10**6)
            v = float(sp.N(expr_s.subs(var, t), _NUMERIC_DIGITS))
            violation = {">0": -v if v <= 0 else 0.0, "<0": v if v >= 0 else 0.0,
                         ">=0": -v if v < 0 else 0.0, "<=0": v if v > 0 else 0.0}[sign]
            if sign in (">0", "<0") and v == 0:
                violation = 1.0
            worst = max(worst, violation)
        residual = worst
    return _record(claims, name, latex, proved, method, residual, note)
