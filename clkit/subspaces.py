r"""Linear algebra on subspaces: orthonormal bases, principal angles, energy outside a subspace.

A subspace of :math:`\mathbb R^d` is given by any ``(d, m)`` matrix whose columns span it (the
columns need not be orthonormal or independent). Functions here are generic; the paper-specific
subspaces (Fisher, spectral) live in :mod:`clkit.fisher`.
"""

from __future__ import annotations

import torch

from ._validation import check_matrix, check_nonnegative

__all__ = ["orthonormal_basis", "numerical_rank", "principal_angles", "energy_outside", "orthogonal_projector"]


def _default_rtol(a: torch.Tensor) -> float:
    return max(a.shape) * torch.finfo(a.dtype).eps


def numerical_rank(a: torch.Tensor, rtol: float | None = None) -> int:
    r"""Number of singular values of ``a`` above ``rtol`` times the largest one.

    The default ``rtol`` is :math:`\max(d, m)\,\varepsilon` (machine epsilon of ``a``'s dtype), as in
    ``numpy.linalg.matrix_rank``. A zero matrix has rank 0.

    Raises:
        ValueError: if ``a`` is not a finite 2-D tensor, or ``rtol`` is negative.
    """
    check_matrix("a", a)
    rtol = _default_rtol(a) if rtol is None else check_nonnegative("rtol", rtol)
    s = torch.linalg.svdvals(a)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    return int((s > rtol * s[0]).sum())


def orthonormal_basis(a: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    r"""Orthonormal basis :math:`Q` of :math:`\mathrm{Col}(a)`, shape ``(d, rank)``, rank-aware.

    The left singular vectors of :math:`a = U S V^\top` whose singular values exceed ``rtol``
    times the largest (see :func:`numerical_rank`). :math:`Q^\top Q = I` and :math:`QQ^\top` is the
    orthogonal projector onto :math:`\mathrm{Col}(a)`.

    Raises:
        ValueError: if ``a`` is not a finite 2-D tensor, or ``rtol`` is negative.
    """
    rank = numerical_rank(a, rtol)
    u, _, _ = torch.linalg.svd(a, full_matrices=False)
    return u[:, :rank]


def orthogonal_projector(a: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    r"""Orthogonal projector :math:`P = QQ^\top` onto :math:`\mathrm{Col}(a)`, shape ``(d, d)``."""
    q = orthonormal_basis(a, rtol)
    return q @ q.T


def principal_angles(a: torch.Tensor, b: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    r"""Principal angles between :math:`\mathrm{Col}(a)` and :math:`\mathrm{Col}(b)`, in radians, ascending.

    With orthonormal bases :math:`Q_a, Q_b` (:func:`orthonormal_basis`), the cosines of the angles
    are the singular values of :math:`Q_a^\top Q_b` and their sines those of
    :math:`Q_b - Q_a Q_a^\top Q_b` (Björck & Golub 1973; Knyazev & Argentati 2002). Small angles are
    taken from the sines and large ones from the cosines, so both ends are accurate to round-off
    (``arccos`` alone cannot resolve angles below :math:`\sqrt{\varepsilon}\approx 10^{-8}`).
    Returns :math:`\min(\dim\mathrm{Col}(a), \dim\mathrm{Col}(b))` angles in :math:`[0, \pi/2]`,
    the same numbers as ``scipy.linalg.subspace_angles`` in reverse order.

    Args:
        a: ``(d, m)`` matrix, columns spanning the first subspace.
        b: ``(d, n)`` matrix, columns spanning the second subspace.
        rtol: rank threshold for both bases (see :func:`numerical_rank`).

    Raises:
        ValueError: naming the argument, if ``a`` or ``b`` is not a finite 2-D tensor, if they have
            different numbers of rows, or if either spans only the zero subspace.
    """
    check_matrix("a", a)
    check_matrix("b", b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of rows, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    b = b.to(dtype=a.dtype, device=a.device)
    qa, qb = orthonormal_basis(a, rtol), orthonormal_basis(b, rtol)
    for name, q in (("a", qa), ("b", qb)):
        if q.shape[1] == 0:
            raise ValueError(f"{name} spans the zero subspace (all singular values vanish)")
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa
    # Now dim(qa) >= dim(qb): every direction of qb has one angle to Col(qa).
    cross = qa.T @ qb
    cosines = torch.linalg.svdvals(cross).clamp(0.0, 1.0).flip(0)  # ascending cosines
    sines = torch.linalg.svdvals(qb - qa @ cross).clamp(0.0, 1.0)  # descending sines
    angles_cos = torch.arccos(cosines).flip(0)  # ascending angles
    angles_sin = torch.arcsin(sines).flip(0)  # ascending angles
    return torch.where(sines.flip(0) ** 2 < 0.5, angles_sin, angles_cos)


def energy_outside(a: torch.Tensor, basis: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    r"""Fraction of :math:`\|a\|_F^2` outside :math:`\mathrm{Col}(\text{basis})`.

    .. math:: \frac{\|(I - QQ^\top)\,a\|_F^2}{\|a\|_F^2}, \qquad Q = \text{orthonormal basis of Col(basis)},

    a number in :math:`[0, 1]`: ``0`` when every column of ``a`` lies in the subspace.

    Raises:
        ValueError: if either argument is not a finite 2-D tensor, the row counts differ, or
            ``a`` is zero.
    """
    check_matrix("a", a)
    check_matrix("basis", basis)
    if a.shape[0] != basis.shape[0]:
        raise ValueError(
            f"a and basis must have the same number of rows, got a {tuple(a.shape)} and basis {tuple(basis.shape)}"
        )
    total = a.pow(2).sum()
    if float(total) == 0.0:
        raise ValueError("a must not be the zero matrix")
    q = orthonormal_basis(basis.to(dtype=a.dtype, device=a.device), rtol)
    residual = a - q @ (q.T @ a)
    return residual.pow(2).sum() / total
