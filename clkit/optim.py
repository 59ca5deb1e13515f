r"""Shared numerics: batched damped Newton with a backtracking Armijo line search.

:func:`damped_newton` minimises a smooth function of :math:`p` variables, or a batch of
independent such problems at once (leading dimensions of ``x0``), from its exact value,
gradient and Hessian. Each iteration solves the Newton system

.. math::
    H_k\,\delta_k = \nabla f(x_k),\qquad x_{k+1} = x_k - s_k\,\delta_k,

and chooses :math:`s_k\in\{1,\beta,\beta^2,\dots\}` by backtracking until
the Armijo sufficient-decrease condition holds,

.. math::
    f(x_k - s\,\delta_k) \le f(x_k) - c_1\,s\,\nabla f(x_k)^\top\delta_k + \varepsilon_f,

(Nocedal & Wright, *Numerical Optimization*, 2nd ed., Springer 2006, Algorithm 3.1 and
Section 3.3), where :math:`\varepsilon_f = 64\,\epsilon_{\rm mach}|f(x_k)|` is
the round-off of the value: once the decrease is below it the full step is accepted. For a
strictly convex :math:`f` the Hessian is positive definite, the direction descends, and near the
minimiser full steps are accepted and converge quadratically (N&W Theorem 3.5). With
``saddle_free=True`` the Hessian's eigenvalues are replaced by their absolute values (clamped
away from 0), so the direction descends also where :math:`f` is not convex (Dauphin et al.,
2014); convergence is then to a stationary point, which the caller must classify.

Every problem of the batch stops (and keeps its point) once its gradient norm is below
``grad_tol`` (or, optionally, once its full Newton step is below ``x_rtol`` relative); converged problems
are no longer moved while the others iterate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ._validation import check_nonnegative, check_positive

__all__ = ["NewtonResult", "damped_newton"]

_VALUE_SLACK = 64  # round-off of the value in units of machine epsilon times |f|


@dataclass(frozen=True)
class NewtonResult:
    """Result of :func:`damped_newton`.

    ``x`` ``(..., p)``: the iterate with the smallest gradient norm seen, per problem; ``value``
    ``(...)`` and ``grad`` ``(..., p)`` at ``x``; ``grad_norm`` ``(...)`` its norm;
    ``converged`` ``(...)`` bool (gradient below ``grad_tol`` or full Newton step below ``x_rtol``);
    ``n_iter`` the Newton steps taken;
    ``history`` the largest gradient norm over the batch before each step and at the end.
    """

    x: torch.Tensor
    value: torch.Tensor
    grad: torch.Tensor
    grad_norm: torch.Tensor
    converged: torch.Tensor
    n_iter: int
    history: tuple[float, ...]


def _backtracking(
    value: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    direction: torch.Tensor,
    f0: torch.Tensor,
    slope: torch.Tensor,
    *,
    armijo: float = 1e-4,
    shrink: float = 0.5,
    max_backtracks: int = 40,
) -> torch.Tensor:
    r"""Batched backtracking line search: step lengths :math:`s` with the Armijo decrease.

    For each problem of the batch, the largest :math:`s=\beta^j` (:math:`\beta` = ``shrink``,
    :math:`j=0,\dots,` ``max_backtracks``) with
    :math:`f(x+s\,d)\le f_0 + c_1\,s\,g^\top d + 64\,\epsilon_{\rm mach}|f_0|`
    (Nocedal & Wright 2006, Algorithm 3.1); where no :math:`j` qualifies the smallest step
    :math:`\beta^{j_{\max}}` is returned.

    Args:
        value: ``(..., p) -> (...)``, the objective of every problem at once.
        x: ``(..., p)`` current points; ``direction``: ``(..., p)`` search directions :math:`d`.
        f0: ``(...)`` values at ``x``; ``slope``: ``(...)`` directional derivatives
            :math:`g^\top d` (negative for a descent direction).
        armijo: :math:`c_1\in[0,1)`; shrink: :math:`\beta\in(0,1)`; max_backtracks: ``>= 0``.

    Returns:
        ``(...)`` step lengths.

    Raises:
        ValueError: naming the argument, for shapes that disagree or parameters out of range.
    """
    if x.shape != direction.shape:
        raise ValueError(f"direction must have the shape of x {tuple(x.shape)}, got {tuple(direction.shape)}")
    if f0.shape != x.shape[:-1] or slope.shape != x.shape[:-1]:
        raise ValueError(f"f0 and slope must have shape {tuple(x.shape[:-1])}, got {tuple(f0.shape)}, {tuple(slope.shape)}")
    if not 0.0 <= armijo < 1.0:
        raise ValueError(f"armijo must be in [0, 1), got {armijo}")
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"shrink must be in (0, 1), got {shrink}")
    if isinstance(max_backtracks, bool) or not isinstance(max_backtracks, int) or max_backtracks < 0:
        raise ValueError(f"max_backtracks must be a non-negative int, got {max_backtracks!r}")
    slack = _VALUE_SLACK * torch.finfo(f0.dtype).eps * f0.abs()
    s = torch.ones_like(f0)
    for _ in range(max_backtracks):
        trial = value(x + s[..., None] * direction)
        ok = trial <= f0 + armijo * s * slope + slack
        if bool(ok.all()):
            break
        s = torch.where(ok, s, shrink * s)
    return s


def damped_newton(
    value_grad_hess: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    x0: torch.Tensor,
    *,
    grad_tol: float,
    x_rtol: float | None = None,
    max_iter: int = 100,
    value: Callable[[torch.Tensor], torch.Tensor] | None = None,
    armijo: float = 1e-4,
    shrink: float = 0.5,
    max_backtracks: int = 40,
    saddle_free: bool = False,
    norm_ord: float = 2.0,
    patience: int | None = None,
    strict: bool = True,
) -> NewtonResult:
    r"""Minimise a batch of smooth functions by damped Newton with Armijo backtracking.

    The algorithm and its guarantees are in the module docstring (Nocedal & Wright 2006,
    Algorithm 3.1 with the Newton direction).

    Args:
        value_grad_hess: ``x (..., p) -> (f (...), g (..., p), H (..., p, p))``, the exact value,
            gradient and Hessian of every problem at once.
        x0: ``(..., p)`` starting points (floating tensor; its dtype and device are kept).
        grad_tol: a problem has converged once the ``norm_ord``-norm of its gradient is below it
            (``>= 0``; 0 leaves only ``x_rtol``).
        x_rtol: if given, a problem has also converged once a full Newton step
            :math:`\delta_k = H_k^{-1}\nabla f(x_k)` was no longer than ``x_rtol * (1 + |x|)``
            (norms ``norm_ord``): the test for objectives whose gradient cannot reach
            ``grad_tol`` in floating point. The full step is measured, not the damped one, so
            a line search that found no Armijo step does not count as convergence.
        max_iter: at most this many Newton steps.
        value: ``x -> f`` alone, for the line search (default: ``value_grad_hess(x)[0]``).
        armijo: :math:`c_1\in[0,1)` of the Armijo condition; shrink: the factor
            :math:`\beta\in(0,1)` per backtracking step; max_backtracks: at most this many
            (the smallest step :math:`\beta^{\text{max\_backtracks}}` is taken if none qualifies).
        saddle_free: use :math:`|H|` (absolute eigenvalues, clamped at :math:`10^{-12}`
            times the largest) instead of :math:`H`, so every step descends.
        norm_ord: the vector norm of the stopping test (2: Euclidean, ``math.inf``: largest entry).
        patience: stop early after this many steps in which the largest gradient norm over the
            batch did not decrease (round-off floor); ``None`` never stops early.
        strict: raise ``RuntimeError`` unless every problem converged; otherwise return the
            result with its ``converged`` mask.

    Returns:
        A :class:`NewtonResult`; ``x`` is, per problem, the iterate of smallest gradient norm.

    Raises:
        ValueError: naming the argument, for a non-floating or non-finite ``x0``, a
            ``value_grad_hess`` whose shapes disagree with ``x0``, or parameters out of range.
        RuntimeError: with ``strict=True``, if some problem has not converged.

    Example:
        >>> import torch
        >>> def vgh(x):  # f(x) = sum_i (e^{x_i} - 2 x_i), minimised at x_i = log 2
        ...     e = x.exp()
        ...     return (e - 2 * x).sum(-1), e - 2, torch.diag_embed(e)
        >>> x0 = torch.zeros(3, 2, dtype=torch.float64)  # three problems of two variables
        >>> result = damped_newton(vgh, x0, grad_tol=1e-12)
        >>> bool(torch.allclose(result.x, torch.full((3, 2), 2.0).log().double()))
        True
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.dim() < 1:
        raise ValueError(f"x0 must be a floating tensor of shape (..., p), got {getattr(x0, 'shape', type(x0))}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 contains non-finite values (NaN or inf)")
    grad_tol = check_nonnegative("grad_tol", grad_tol)
    if x_rtol is not None:
        x_rtol = check_positive("x_rtol", x_rtol)
    elif grad_tol == 0:
        raise ValueError("grad_tol must be > 0 unless x_rtol is given")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative int, got {max_iter!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be a positive int or None, got {patience!r}")
    if not (norm_ord > 0):
        raise ValueError(f"norm_ord must be > 0, got {norm_ord}")
    if value is None:
        def value(x: torch.Tensor) -> torch.Tensor:
            return value_grad_hess(x)[0]

    batch, p = x0.shape[:-1], x0.shape[-1]
    x = x0.detach().clone()
    f, g, h = value_grad_hess(x)
    if f.shape != batch or g.shape != x.shape or h.shape != (*batch, p, p):
        raise ValueError(
            f"value_grad_hess must return shapes {tuple(batch)}, {tuple(x.shape)}, {(*batch, p, p)}; "
            f"got {tuple(f.shape)}, {tuple(g.shape)}, {tuple(h.shape)}"
        )
    gnorm = torch.linalg.vector_norm(g, ord=norm_ord, dim=-1)
    best_x, best_f, best_g, best_n = x.clone(), f.clone(), g.clone(), gnorm.clone()
    history = [float(gnorm.max())]
    record, stalled, steps = history[0], 0, 0
    done = gnorm < grad_tol
    for steps in range(max_iter):
        active = ~done
        if not bool(active.any()):
            break
        if saddle_free:
            evals, evecs = torch.linalg.eigh(h)
            evals = evals.abs()
            evals = evals.clamp_min(1e-12 * evals.amax(-1, keepdim=True))
            delta = evecs @ ((evecs.transpose(-1, -2) @ g[..., None]) / evals[..., None])
        else:
            delta = torch.linalg.solve(h, g[..., None])
        direction = -delta[..., 0] * active[..., None]  # converged problems stay where they are
        s = _backtracking(value, x, direction, f, (g * direction).sum(-1), armijo=armijo, shrink=shrink,
                         max_backtracks=max_backtracks)
        x = x + s[..., None] * direction
        f, g, h = value_grad_hess(x)
        gnorm = torch.linalg.vector_norm(g, ord=norm_ord, dim=-1)
        better = gnorm < best_n
        best_x = torch.where(better[..., None], x, best_x)
        best_g = torch.where(better[..., None], g, best_g)
        best_f = torch.where(better, f, best_f)
        best_n = torch.where(better, gnorm, best_n)
        done = done | (gnorm < grad_tol)
        if x_rtol is not None:
            # the full Newton step, not the damped one: a line search that found no Armijo step
            # takes a step of shrink**max_backtracks * |delta|, which must not count as converged
            length = torch.linalg.vector_norm(direction, ord=norm_ord, dim=-1)
            scale = 1.0 + torch.linalg.vector_norm(x, ord=norm_ord, dim=-1)
            done = done | (active & (length <= x_rtol * scale))
        history.append(float(gnorm.max()))
        stalled = 0 if history[-1] < record else stalled + 1
        record = min(record, history[-1])
        if patience is not None and stalled >= patience:
            steps += 1
            break
    else:
        steps = max_iter
    converged = done
    if strict and not bool(converged.all()):
        raise RuntimeError(
            f"damped_newton: {int((~converged).sum())} problem(s) not converged (gradient norm "
            f"{float(best_n.max()):.3g}, grad_tol={grad_tol:g}, x_rtol={x_rtol}) after {steps} steps"
        )
    return NewtonResult(best_x, best_f, best_g, best_n, converged, steps, tuple(history))
