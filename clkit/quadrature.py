r"""Gauss–Hermite quadrature for Gaussian expectations, shared by the book's chapters.

:func:`gauss_hermite_grid` is the tensor-product rule for :math:`\mathbb E f(\eta)`,
:math:`\eta\sim\mathcal N(0, I_{\text{dim}})`, built from the one-dimensional rule of
``numpy.polynomial.hermite.hermgauss``; :func:`gauss_hermite_expectation` applies it to a
function. The tests compare both with ``scipy.special.roots_hermitenorm`` and
``scipy.integrate``.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable

import numpy as np
import torch

__all__ = ["gauss_hermite_grid", "gauss_hermite_expectation"]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
        raise ValueError(f"dim must be a non-negative int, got {dim!r}")
    return dim


def gauss_hermite_grid(
    dim: int, n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Tensor Gauss–Hermite rule for :math:`\mathbb E f(\eta)`, :math:`\eta\sim\mathcal N(0, I_{\text{dim}})`.

    .. math:: \mathbb E f(\eta) \approx \sum_p \omega_p f(\eta_p),\qquad
              \eta_p = \sqrt2\,(\xi_{i_1},\dots,\xi_{i_{\text{dim}}}),\quad
              \omega_p = \pi^{-\text{dim}/2}\prod_j \varpi_{i_j},

    with :math:`(\xi_i, \varpi_i)` the ``n``-point rule for :math:`\int e^{-\xi^2}g(\xi)\,d\xi`
    (``numpy.polynomial.hermite.hermgauss``). Exact for polynomials of degree :math:`\le 2n-1` in
    each coordinate.

    Args:
        dim: dimension of :math:`\eta` (``>= 0``).
        n: points per dimension (``>= 1``).
        dtype, device: of the returned tensors.

    Returns:
        ``(nodes, weights)`` of shapes ``(n**dim, dim)`` and ``(n**dim,)`` (the last coordinate
        varies fastest); for ``dim = 0`` one node with weight 1.

    Raises:
        ValueError: if ``dim`` is negative or ``n`` not positive.

    Example:
        >>> nodes, weights = gauss_hermite_grid(1, 3)
        >>> round(float(weights @ nodes[:, 0] ** 4), 12)  # E eta^4 = 3
        3.0
    """
    _check_dim(dim)
    _check_n(n)
    if dim == 0:
        return torch.zeros(1, 0, dtype=dtype, device=device), torch.ones(1, dtype=dtype, device=device)
    nodes, weights = _hermite_tensor_rule_torch(dim, n, dtype, torch.device(device) if device is not None else None)
    return nodes.clone(), weights.clone()


def gauss_hermite_expectation(
    f: Callable[[torch.Tensor], torch.Tensor], dim: int, n: int, *, dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r""":math:`\mathbb E f(\eta)\approx\sum_p\omega_pf(\eta_p)` with :func:`gauss_hermite_grid`.

    Args:
        f: maps nodes ``(P, dim)`` to values ``(P, ...)``.
        dim, n, dtype, device: as in :func:`gauss_hermite_grid`.

    Returns:
        The weighted sum over the first axis of ``f(nodes)``, shape ``(...)``.

    Raises:
        ValueError: as :func:`gauss_hermite_grid`, or if ``f`` returns a leading axis of the wrong length.
    """
    nodes, weights = gauss_hermite_grid(dim, n, dtype=dtype, device=device)
    values = f(nodes)
    if values.shape[:1] != weights.shape:
        raise ValueError(f"f must return shape ({weights.shape[0]}, ...), got {tuple(values.shape)}")
    return torch.tensordot(weights, values, dims=1)


@functools.lru_cache(maxsize=32)
def _hermite_tensor_rule_torch(dim: int, n: int, dtype: torch.dtype,
                               device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rule as tensors, cached per dtype and device (never modified in place: the solvers of
    :mod:`clkit.population_solvers` read it at every evaluation; :func:`gauss_hermite_grid` hands
    out copies)."""
    nodes, weights = _hermite_tensor_rule(dim, n)
    return torch.tensor(nodes, dtype=dtype, device=device), torch.tensor(weights, dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _hermite_tensor_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, weights)`` as float64 arrays, cached."""
    xi, varpi = np.polynomial.hermite.hermgauss(n)
    nodes = np.array(list(itertools.product(xi, repeat=dim))) * math.sqrt(2.0)
    weights = np.prod(np.array(list(itertools.product(varpi, repeat=dim))), axis=1) / math.pi ** (dim / 2)
    return nodes, weights
