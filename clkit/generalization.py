r"""Huang, Yi, Zhao & Jiang (ICLR 2023): augmentation concentration, alignment, divergence, Theorem 1.

Source: W. Huang, M. Yi, X. Zhao, Z. Jiang, "Towards the Generalization of Contrastive
Self-Supervised Learning", ICLR 2023 (arXiv 2111.00743), as stated in W. Huang's slides (Dec 2023):
the augmented distance, Definition 1 ((σ, δ)-augmentation), Theorem 1 and the two losses. The
paper's "mild assumptions", its definition of :math:`R_\varepsilon` and its decomposition theorems
were not available to us; the module implements the *book's reconstruction*, stated in each
docstring:

* an encoder :math:`f` with :math:`\|f(x)\| = r` for every input (and :math:`L`-Lipschitz when
  :math:`\delta > 0`); every augmentation set contains the identity, :math:`x\in A(x)`;
* :math:`\mu_k = \mathbb E_{x\in C_k}\mathbb E_{x'\in A(x)} f(x')`, :math:`G_f(x)=\arg\min_k\|f(x)-\mu_k\|`;
* :math:`R_\varepsilon = \mathbb P\big[\sup_{x_1,x_2\in A(x)}\|f(x_1)-f(x_2)\|>\varepsilon\big]`;
* :math:`\rho_{\max} = 2(1-\sigma) + cR_\varepsilon/\min_\ell p_\ell + \sigma(L\delta+2\varepsilon)/r`
  with the slides' coefficient :math:`c = 1`, which the book proves whenever
  :math:`\rho_{\max}\le 1/2` (always the case for :math:`K\ge 3` classes when the condition
  holds), and the coefficient :math:`c = 2` of the book's first proof, which holds for every
  :math:`\rho_{\max}` (:func:`theorem1_scan` certifies an encoder when either version applies).

The synthetic data set (:class:`BridgedLatticeClasses`) puts the inputs on a lattice of ``N``
points of the unit circle, and the augmentation (:class:`RotationAugmentation`) rotates by a whole
number of lattice steps in :math:`\{-m,\dots,m\}`, uniformly, optionally composed with a rotation
by a multiple of a *jump*. Every population quantity is then a finite sum and is computed exactly.

The search for configurations that break the proof's certificate is in
:mod:`clkit.certificate_search`; training encoders on the lattice in :mod:`clkit.lattice_training`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ._validation import check_nonnegative, check_positive, check_shape
from .symbolic import is_symbolic

__all__ = [
    "BridgedLatticeClasses",
    "RotationAugmentation",
    "augmented_distance",
    "class_centres",
    "nearest_centre_predict",
    "nearest_centre_error",
    "augmentation_spread",
    "alignment_tail_bound",
    "centre_norm_deficit",
    "rho_max",
    "divergence_threshold",
    "theorem1_bound",
    "Theorem1Scan",
    "theorem1_scan",
    "one_negative_info_nce",
    "second_moment_normalize",
    "InfoNCEDecomposition",
    "population_info_nce",
    "population_cross_correlation",
    "info_nce_pair_bound",
    "info_nce_divergence_bound",
    "cross_correlation_pair_bound",
    "cross_correlation_divergence_bound",
]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# The data set and its augmentation
# --------------------------------------------------------------------------------------------------


class _LatticeLaws:
    """Laws shared by the lattice data sets: points, joint and marginal laws, labels, sampling."""

    n_points: int
    weights: torch.Tensor

    def class_distributions(self) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def points(self) -> torch.Tensor:
        """``(N, 2)`` coordinates of the lattice points."""
        angle = 2 * math.pi * torch.arange(self.n_points, dtype=self.weights.dtype, device=self.weights.device)
        return torch.stack([torch.cos(angle / self.n_points), torch.sin(angle / self.n_points)], dim=1)

    def joint(self) -> torch.Tensor:
        """``(K, N)`` joint law :math:`p_k\\,\\mathbb P[x = x_j\\mid k]`."""
        return self.weights[:, None] * self.class_distributions()

    def marginal(self) -> torch.Tensor:
        """``(N,)`` law of the input :math:`\\mathbb P[x = x_j]`."""
        return self.joint().sum(dim=0)

    def labels(self) -> torch.Tensor:
        """``(N,)`` class of each lattice point, ``-1`` off the supports."""
        inside = self.class_distributions() > 0
        return torch.where(inside.any(dim=0), inside.to(torch.int64).argmax(dim=0), -1)

    def sample(self, n: int, generator: torch.Generator, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` inputs: ``(indices, labels)`` of shape ``(n,)``, or ``(batch, n)`` if ``batch``."""
        _check_int("n", n, 1)
        law = self.marginal() if batch is None else self.marginal().expand(_check_int("batch", batch, 1), -1)
        indices = torch.multinomial(law, n, replacement=True, generator=generator)
        return indices, self.labels()[indices]


@dataclass(frozen=True)
class BridgedLatticeClasses(_LatticeLaws):
    r"""``K`` classes on a lattice of the circle, each a *core* arc and a *bridge* to the next class.

    The circle carries :math:`N = K(2W + 1 + G)` lattice points, in ``K`` blocks of
    :math:`2W + 1 + G` consecutive points. Block :math:`k` starts with the core of class :math:`k`,
    :math:`2W+1` points with the binomial law :math:`(1-b)\binom{2W}{i}4^{-W}`, and ends with its
    bridge, :math:`G` points of mass :math:`b/G` each, which runs up to the core of class
    :math:`k+1` (cyclically). Every law is rational, so :math:`\sigma`, the class centres' weights and
    :math:`R_\varepsilon` are exact rationals (:meth:`exact_class_distributions`). The classes are
    equally likely, :math:`p_k = 1/K`, and the label is a function of the input.

    With a rotation augmentation of at most :math:`m = W` steps, the bridge points within
    :math:`m` steps of the next core have views in another class, and a main part (pairwise
    :math:`d_A = 0`) is an arc of at most :math:`2m+1` points: the core, so :math:`\sigma = 1-b`.

    Args:
        n_classes: :math:`K \ge 2`.
        core_half_width: :math:`W \ge 0`.
        gap: :math:`G \ge 1`, the number of bridge points.
        bridge_mass: :math:`b \in [0, 1)` as a ``Fraction`` (or an ``int``/``str`` it accepts).
        dtype, device: of the tensors.

    Raises:
        ValueError: naming the argument that is invalid.
    """

    n_classes: int
    core_half_width: int
    gap: int
    bridge_mass: Fraction
    dtype: torch.dtype = torch.float64
    device: torch.device | str | None = None
    weights: torch.Tensor = field(init=False, repr=False)
    _laws: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_int("n_classes", self.n_classes, 2)
        _check_int("core_half_width", self.core_half_width, 0)
        _check_int("gap", self.gap, 1)
        if isinstance(self.bridge_mass, float) or isinstance(self.bridge_mass, bool):
            raise ValueError(f"bridge_mass must be exact (a Fraction), got {self.bridge_mass!r}")
        try:
            b = Fraction(self.bridge_mass)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bridge_mass must be a fraction in [0, 1), got {self.bridge_mass!r}") from err
        if not 0 <= b < 1:
            raise ValueError(f"bridge_mass must be in [0, 1), got {b}")
        object.__setattr__(self, "bridge_mass", b)
        object.__setattr__(self, "weights", torch.full((self.n_classes,), 1 / self.n_classes, dtype=self.dtype,
                                                       device=self.device))
        rows = self.exact_class_distributions()
        object.__setattr__(self, "_laws", torch.tensor([[float(v) for v in row] for row in rows], dtype=self.dtype,
                                                       device=self.device))

    @property
    def block(self) -> int:
        """:math:`2W + 1 + G`, the lattice points per class."""
        return 2 * self.core_half_width + 1 + self.gap

    @property
    def n_points(self) -> int:  # type: ignore[override]
        return self.n_classes * self.block

    def exact_weights(self) -> list[Fraction]:
        """The class probabilities :math:`p_k = 1/K` as fractions."""
        return [Fraction(1, self.n_classes)] * self.n_classes

    def exact_class_distributions(self) -> list[list[Fraction]]:
        """``K`` rows of ``N`` fractions: :math:`\\mathbb P[x = x_j\\mid k]`, exactly."""
        w, b = self.core_half_width, self.bridge_mass
        core = [(1 - b) * Fraction(math.comb(2 * w, i), 4**w) for i in range(2 * w + 1)]
        bridge = [b / self.gap] * self.gap
        rows = []
        for k in range(self.n_classes):
            row = [Fraction(0)] * self.n_points
            row[k * self.block:(k + 1) * self.block] = core + bridge
            rows.append(row)
        return rows

    def core_mask(self) -> torch.Tensor:
        """``(K, N)`` indicator of the core of each class."""
        j = torch.arange(self.n_points, device=self.device)
        start = torch.arange(self.n_classes, device=self.device)[:, None] * self.block
        return (j[None, :] >= start) & (j[None, :] < start + 2 * self.core_half_width + 1)

    def class_distributions(self) -> torch.Tensor:
        """``(K, N)`` conditional laws (floats of the exact fractions; rows sum to 1)."""
        return self._laws.clone()


@dataclass(frozen=True)
class RotationAugmentation:
    r"""Rotations by :math:`t\in\{-m,\dots,m\}` lattice steps, uniformly: :math:`A(x_j)=\{x_{j+t}\}`.

    Optionally composed with a *jump*: a rotation by :math:`uJ` lattice steps, :math:`u` uniform on
    :math:`\{0,\dots,N/J-1\}` and independent of :math:`t`, so that
    :math:`A(x_j)=\{x_{j+t+uJ}\}` (the book's model of composing a second transformation with the
    first). With ``jump = N/P`` and a data set of ``P`` parts per class the jump maps each part of a
    class onto the next and never changes the class.

    The identity (:math:`t=u=0`) is in every :math:`A(x)`. All the laws the theory needs are exact:

    * ``view_indices`` ``(N, M)``, :math:`M = (2m+1)N/J` (:math:`2m+1` without jump): the views of
      each lattice point;
    * ``view_matrix`` :math:`B` ``(N, N)``, :math:`B_{xy} = \mathbb P[\text{view} = y \mid x]`;
    * ``class_view_distributions`` :math:`q_k = \mathbb P[\cdot\mid k]\,B` ``(K, N)``, the law of an
      augmented view of class :math:`k`, so that :math:`\mu_k = q_k f`;
    * ``view_marginal`` :math:`q = p_X B` ``(N,)``, the law of the negative's view;
    * ``pair_distribution`` :math:`Q = B^\top \mathrm{diag}(p_X) B` ``(N, N)``, the joint law of a
      positive pair :math:`(x_1, x_2)` with :math:`x_1, x_2` independent views of one :math:`x`.

    Args:
        data: the data set.
        max_shift: :math:`m\ge 0`, with :math:`3(2m+1) \le J` (so that arcs stay arcs).
        jump: :math:`J`, a divisor of ``N``; ``0`` (default) or ``N`` for no jump.

    Raises:
        ValueError: if ``max_shift`` or ``jump`` is not an integer in range.
    """

    data: _LatticeLaws
    max_shift: int
    jump: int = 0
    view_indices: torch.Tensor = field(init=False, repr=False)
    view_matrix: torch.Tensor = field(init=False, repr=False)
    class_view_distributions: torch.Tensor = field(init=False, repr=False)
    view_marginal: torch.Tensor = field(init=False, repr=False)
    pair_distribution: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_int("max_shift", self.max_shift, 0)
        n = self.data.n_points
        _check_int("jump", self.jump, 0)
        if self.jump > n or (self.jump and n % self.jump):
            raise ValueError(f"jump must be 0 or a divisor of N = {n}, got {self.jump}")
        if 3 * (2 * self.max_shift + 1) > self.period:
            raise ValueError(f"max_shift must satisfy 3(2m+1) <= J = {self.period}, got {self.max_shift}")
        device, dtype = self.data.weights.device, self.data.weights.dtype
        small = torch.arange(-self.max_shift, self.max_shift + 1, device=device)
        jumps = torch.arange(0, n, self.period, device=device)
        shifts = (jumps[:, None] + small[None, :]).flatten()
        views = (torch.arange(n, device=device)[:, None] + shifts[None, :]) % n
        b = torch.zeros(n, n, dtype=dtype, device=device)
        b.scatter_add_(1, views, torch.full(views.shape, 1.0 / views.shape[1], dtype=dtype, device=device))
        marginal = self.data.marginal()
        object.__setattr__(self, "view_indices", views)
        object.__setattr__(self, "view_matrix", b)
        object.__setattr__(self, "class_view_distributions", self.data.class_distributions() @ b)
        object.__setattr__(self, "view_marginal", marginal @ b)
        object.__setattr__(self, "pair_distribution", b.T @ (marginal[:, None] * b))

    @property
    def period(self) -> int:
        """:math:`J`, the jump (``N`` when there is none)."""
        return self.jump if self.jump else self.data.n_points

    @property
    def n_views(self) -> int:
        """:math:`M = (2m + 1)N/J`, the size of each :math:`A(x)`."""
        return (2 * self.max_shift + 1) * (self.data.n_points // self.period)

    def sample_views(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One uniformly drawn view (a lattice index) of each input in ``indices``."""
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, indices.shape, generator=generator,
                               device=indices.device)
        n_jumps = self.data.n_points // self.period
        if n_jumps > 1:
            shifts = shifts + self.period * torch.randint(0, n_jumps, indices.shape, generator=generator,
                                                          device=indices.device)
        return (indices + shifts) % self.data.n_points

    def main_part(self, delta: float = 0.0) -> tuple[float, torch.Tensor]:
        r"""The largest :math:`\sigma` of Definition 1 for a given :math:`\delta`, and the main parts.

        Two lattice points :math:`g` steps apart have augmented distance
        :math:`d_A = 2\sin\big(\pi\max(0, g-2m)/N\big)` (the arcs :math:`A(x)` overlap while
        :math:`g\le 2m`), with :math:`g` the circular gap modulo the jump :math:`J` (the closest pair of
        copies). A set whose pairwise :math:`d_A` is at most :math:`\delta` is therefore a set of
        pairwise gap (mod :math:`J`) at most :math:`D = 2m + g_\delta`, with :math:`g_\delta` the largest
        gap whose chord is :math:`\le\delta`; for :math:`D < J/3` such a set lies in the union
        :math:`S_c` of an arc of :math:`D` steps and its copies rotated by multiples of :math:`J`. So
        :math:`C_k^0` is the heaviest such union and

        .. math::
            \sigma = \min_k \max_{c}\ \mathbb P\big[x\in S_c\mid k\big],\qquad
            S_c = \{x_{c+i+uJ}: 0\le i\le D,\ 0\le u < N/J\}.

        Returns:
            ``(sigma, mask)`` with ``mask`` ``(K, N)`` the indicator of each class's main part.

        Raises:
            ValueError: if ``delta < 0`` or the arc would not be shorter than :math:`J/3`.
        """
        delta = check_nonnegative("delta", delta)
        n = self.data.n_points
        gaps = torch.arange(n // 2 + 1, dtype=torch.float64)
        g_delta = int((2 * torch.sin(math.pi * gaps / n) <= delta + 1e-15).nonzero().max())
        diameter = 2 * self.max_shift + g_delta
        if 3 * diameter >= self.period:
            raise ValueError(f"delta too large: main-part arcs of {diameter} steps are not shorter than J/3")
        device = self.data.weights.device
        arc = torch.arange(diameter + 1, device=device)
        copies = (torch.arange(0, n, self.period, device=device)[:, None] + arc[None, :]).flatten()
        window = (torch.arange(n, device=device)[:, None] + copies[None, :]) % n
        conditional = self.data.class_distributions()
        mass = conditional[:, window].sum(dim=-1)  # (K, N): mass of the arc starting at each point
        best = mass.argmax(dim=1)
        mask = torch.zeros_like(conditional, dtype=torch.bool)
        mask.scatter_(1, window[best], True)
        return float(mass.max(dim=1).values.min()), mask


def augmented_distance(views_a: torch.Tensor, views_b: torch.Tensor) -> torch.Tensor:
    r"""Augmented distance of Huang et al. (slides, "Intuition") for finite augmentation sets.

    .. math::
        d_A(x_1, x_2) = \min_{x_1'\in A(x_1),\,x_2'\in A(x_2)}\|x_1' - x_2'\|.

    Args:
        views_a: ``(..., M_a, D)`` the points of :math:`A(x_1)`.
        views_b: ``(..., M_b, D)`` the points of :math:`A(x_2)` (same leading shape).

    Returns:
        ``(...)`` tensor of distances.

    Raises:
        ValueError: for tensors of fewer than two dimensions or mismatched shapes.
    """
    if views_a.dim() < 2 or views_b.dim() != views_a.dim():
        raise ValueError(f"views_a and views_b must have the same number (>= 2) of dimensions, "
                         f"got {tuple(views_a.shape)} and {tuple(views_b.shape)}")
    if views_a.shape[:-2] != views_b.shape[:-2] or views_a.shape[-1] != views_b.shape[-1]:
        raise ValueError(f"views_b must have shape (..., M_b, {views_a.shape[-1]}) with leading shape "
                         f"{tuple(views_a.shape[:-2])}, got {tuple(views_b.shape)}")
    return torch.cdist(views_a, views_b).flatten(-2).min(dim=-1).values


# --------------------------------------------------------------------------------------------------
# Theorem 1
# --------------------------------------------------------------------------------------------------


def class_centres(embeddings: torch.Tensor, class_view_distributions: torch.Tensor) -> torch.Tensor:
    r"""Class centres :math:`\mu_k = \mathbb E_{x\in C_k}\mathbb E_{x'\in A(x)} f(x') = q_k f`.

    Args:
        embeddings: ``(..., N, d)`` the embedding :math:`f(x_j)` of every lattice point (a leading
            batch shape for several encoders).
        class_view_distributions: ``(K, N)`` laws :math:`q_k` of an augmented view of class ``k``.

    Returns:
        ``(..., K, d)`` centres.

    Raises:
        ValueError: on shape mismatch.
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() < 2:
        raise ValueError(f"embeddings must be a tensor of shape (..., N, d), got {embeddings!r:.80}")
    check_shape("class_view_distributions", class_view_distributions, (None, embeddings.shape[-2]))
    return class_view_distributions @ embeddings


def nearest_centre_predict(embeddings: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    r"""Nearest-centre classifier :math:`G_f(x) = \arg\min_k \|f(x) - \mu_k\|` (ties: lowest ``k``).

    Args:
        embeddings: ``(..., n, d)``; centres: ``(..., K, d)`` (same leading shape).

    Returns:
        ``(..., n)`` predicted classes.

    Raises:
        ValueError: on shape mismatch.
    """
    if embeddings.dim() < 2 or centres.dim() != embeddings.dim() or centres.shape[-1] != embeddings.shape[-1]:
        raise ValueError(f"centres must have shape (..., K, {embeddings.shape[-1]}) matching embeddings "
                         f"{tuple(embeddings.shape)}, got {tuple(centres.shape)}")
    # squared distances by expansion: the argmin of cdist, without its sqrt
    sq = centres.pow(2).sum(-1).unsqueeze(-2) - 2 * embeddings @ centres.transpose(-1, -2)
    return sq.argmin(dim=-1)


def nearest_centre_error(predictions: torch.Tensor, joint: torch.Tensor) -> float | torch.Tensor:
    r""":math:`\mathrm{Err}(G_f) = \sum_k\sum_j \mathbb P[x = x_j, y = k]\,\mathbb 1[G_f(x_j)\ne k]`, exactly.

    Args:
        predictions: ``(..., N)`` :math:`G_f(x_j)` for every lattice point.
        joint: ``(K, N)`` joint law of (label, input).

    Returns:
        A float for ``(N,)`` predictions, else a ``(...)`` tensor.

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("joint", joint, (None, None))
    if predictions.dim() < 1 or predictions.shape[-1] != joint.shape[1]:
        raise ValueError(f"predictions must have shape (..., {joint.shape[1]}), got {tuple(predictions.shape)}")
    classes = torch.arange(joint.shape[0], device=joint.device)
    wrong = predictions.unsqueeze(-2) != classes[:, None]
    error = (joint * wrong).sum(dim=(-1, -2))
    return float(error) if predictions.dim() == 1 else error


def augmentation_spread(view_embeddings: torch.Tensor) -> torch.Tensor:
    r"""Spread :math:`D(x) = \max_{x_1,x_2\in A(x)}\|f(x_1) - f(x_2)\|` of each input's views.

    Args:
        view_embeddings: ``(..., n, M, d)`` embeddings of the :math:`M` views of ``n`` inputs.

    Returns:
        ``(..., n)`` spreads.

    Raises:
        ValueError: unless ``view_embeddings`` has at least three dimensions.
    """
    if not isinstance(view_embeddings, torch.Tensor) or view_embeddings.dim() < 3:
        raise ValueError(f"view_embeddings must have shape (..., n, M, d), got {getattr(view_embeddings, 'shape', None)}")
    flat = view_embeddings.reshape(-1, *view_embeddings.shape[-2:])
    return torch.cdist(flat, flat).flatten(1).max(dim=1).values.reshape(view_embeddings.shape[:-2])


def alignment_tail_bound(alignment: float | torch.Tensor, n_views: int, epsilon: float) -> float | torch.Tensor:
    r"""Markov bound of :math:`R_\varepsilon` by the alignment (book's lemma, finite uniform :math:`A`).

    For :math:`M` views :math:`f_1,\dots,f_M` of one input with mean :math:`\bar f`,
    :math:`\max_{i,j}\|f_i-f_j\|^2 \le 2\max_{i\ne j}(\|f_i-\bar f\|^2+\|f_j-\bar f\|^2)
    \le 2\sum_i\|f_i-\bar f\|^2 = M\,\mathbb E_{i,j}\|f_i-f_j\|^2`, hence

    .. math::
        R_\varepsilon \le \frac{M\,\mathcal L_{\mathrm{align}}}{\varepsilon^2},\qquad
        \mathcal L_{\mathrm{align}} = \mathbb E_x\mathbb E_{x_1,x_2\in A(x)}\|f(x_1)-f(x_2)\|^2 .

    Args:
        alignment: :math:`\mathcal L_{\mathrm{align}}`, a float or a tensor (one per encoder).
        n_views: :math:`M`; epsilon: :math:`\varepsilon > 0`.

    Returns:
        :math:`M\mathcal L_{\mathrm{align}}/\varepsilon^2`, of the type of ``alignment``.

    Raises:
        ValueError: if ``alignment < 0``, ``n_views < 1`` or ``epsilon <= 0``.
    """
    alignment = _check_range("alignment", alignment, 0.0)
    _check_int("n_views", n_views, 1)
    epsilon = check_positive("epsilon", epsilon)
    return n_views * alignment / epsilon**2


def _is_tensor(*values: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in values)


def _sqrt(x: Any) -> Any:
    """:math:`\\sqrt{x}` for floats, tensors and SymPy expressions alike."""
    if is_symbolic(x):
        import sympy

        return sympy.sqrt(x)
    if isinstance(x, torch.Tensor):
        return x.sqrt()
    return math.sqrt(x)


def _check_range(name: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False) -> Any:
    """Validate a float or a tensor against ``[lo, hi]`` (``(lo, hi]``); SymPy input passes unchecked."""
    if is_symbolic(value):
        return value
    if isinstance(value, torch.Tensor):
        bad = ~torch.isfinite(value) | (value > hi) | ((value <= lo) if lo_open else (value < lo))
        if bool(bad.any()):
            raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}], got {value[bad].flatten()[:3].tolist()}")
        return value
    out = check_positive(name, value) if lo_open and lo == 0 else check_nonnegative(name, value) if lo == 0 else float(value)
    if out > hi or (out <= lo if lo_open else out < lo):
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}], got {out}")
    return out


def centre_norm_deficit(centres: torch.Tensor, r: float) -> float | torch.Tensor:
    r""":math:`\Delta_\mu = 1 - \min_k \|\mu_k\|^2 / r^2` (Theorem 1).

    Args:
        centres: ``(K, d)`` (a float is returned) or ``(..., K, d)`` (a ``(...)`` tensor).
        r: the norm of :math:`f`.

    Raises:
        ValueError: for ``centres`` of fewer than two dimensions or ``r <= 0``.
    """
    if not isinstance(centres, torch.Tensor) or centres.dim() < 2:
        raise ValueError(f"centres must be a tensor of shape (..., K, d), got {getattr(centres, 'shape', centres)}")
    r = check_positive("r", r)
    deficit = 1.0 - centres.pow(2).sum(dim=-1).min(dim=-1).values / r**2
    return float(deficit) if centres.dim() == 2 else deficit


def rho_max(sigma: Any, r_epsilon: Any, min_weight: Any, r: Any, epsilon: Any, lipschitz: Any = 0.0,
            delta: Any = 0.0, r_coefficient: Any = 1) -> Any:
    r""":math:`\rho_{\max}` of Theorem 1, with the coefficient :math:`c` of :math:`R_\varepsilon` as a parameter.

    .. math::
        \rho_{\max} = 2(1-\sigma) + c\,\frac{R_\varepsilon}{\min_\ell p_\ell}
                      + \sigma\Big(\frac{L\delta}{r} + \frac{2\varepsilon}{r}\Big).

    Huang et al.'s slides print :math:`c = 1`; the book proves the theorem with :math:`c = 1`
    whenever :math:`\rho_{\max}\le\tfrac12` and with :math:`c = 2` for every :math:`\rho_{\max}`.
    Accepts floats, tensors (broadcast) and SymPy expressions (for the chapter's symbolic checks).

    Raises:
        ValueError: if ``sigma`` is not in (0, 1], ``r_epsilon`` not in [0, 1], a scale is negative,
            or ``min_weight``/``r`` are not positive (numeric input only).
    """
    sigma = _check_range("sigma", sigma, 0.0, 1.0, lo_open=True)
    r_epsilon = _check_range("r_epsilon", r_epsilon, 0.0, 1.0)
    min_weight = _check_range("min_weight", min_weight, 0.0, 1.0, lo_open=True)
    r = _check_range("r", r, 0.0, lo_open=True)
    epsilon = _check_range("epsilon", epsilon, 0.0)
    lipschitz = _check_range("lipschitz", lipschitz, 0.0)
    delta = _check_range("delta", delta, 0.0)
    r_coefficient = _check_range("r_coefficient", r_coefficient, 0.0)
    return 2 * (1 - sigma) + r_coefficient * r_epsilon / min_weight + sigma * (lipschitz * delta + 2 * epsilon) / r


def divergence_threshold(rho: Any, delta_mu: Any, r: Any) -> Any:
    r"""Right-hand side of Theorem 1's condition, :math:`r^2(1-\rho_{\max}-\sqrt{2\rho_{\max}}-\Delta_\mu/2)`.

    Accepts floats, tensors (broadcast) and SymPy expressions.

    Raises:
        ValueError: if ``rho < 0`` or ``r <= 0`` (numeric input only).
    """
    rho = _check_range("rho", rho, 0.0)
    r = _check_range("r", r, 0.0, lo_open=True)
    return r**2 * (1 - rho - _sqrt(2 * rho) - delta_mu / 2)


def theorem1_bound(sigma: Any, r_epsilon: Any) -> Any:
    r"""Conclusion of Theorem 1: :math:`\mathrm{Err}(G_f)\le(1-\sigma)+R_\varepsilon` (floats, tensors, SymPy)."""
    return (1 - sigma) + r_epsilon


#: Largest :math:`\rho_{\max}` (slides' coefficient) for which the book proves Theorem 1.
SLIDES_RHO_LIMIT = 0.5


def _max_off_diagonal_inner(centres: torch.Tensor) -> torch.Tensor:
    gram = centres @ centres.transpose(-1, -2)
    eye = torch.eye(gram.shape[-1], dtype=torch.bool, device=gram.device)
    return gram.masked_fill(eye, -math.inf).amax(dim=(-1, -2))


class Theorem1Scan(NamedTuple):
    r"""Theorem 1 at every distinct :math:`\varepsilon` of every encoder of a batch (see :func:`theorem1_scan`).

    Shapes: ``(B, C)`` for per-:math:`\varepsilon` fields, ``(B,)`` for per-encoder ones.
    """

    epsilon: torch.Tensor
    r_epsilon: torch.Tensor
    rho_max: torch.Tensor
    rho_book: torch.Tensor
    threshold: torch.Tensor
    threshold_book: torch.Tensor
    delta_mu: torch.Tensor
    max_inner_product: torch.Tensor
    condition: torch.Tensor
    bound: torch.Tensor
    error: torch.Tensor
    certified_error: torch.Tensor

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per encoder: the index of the smallest bound among the :math:`\\varepsilon` where the
        condition holds, and whether there is one."""
        masked = self.bound.masked_fill(~self.condition, math.inf)
        return masked.argmin(dim=1), self.condition.any(dim=1)


def theorem1_scan(sigma: float, main_mask: torch.Tensor, spread: torch.Tensor, joint: torch.Tensor,
                  centres: torch.Tensor, predictions: torch.Tensor, r: float) -> Theorem1Scan:
    r"""Theorem 1 for a batch of encoders at every :math:`\varepsilon\in\{0\}\cup\{D(x)\}`, in one pass.

    :math:`R_\varepsilon` is a step function of :math:`\varepsilon` that jumps only at the spreads
    :math:`D(x)`, so these candidates give every distinct value of the bound. For each encoder and
    candidate the scan returns :math:`R_\varepsilon`, both :math:`\rho_{\max}` (:func:`rho_max` with
    :math:`c = 1, 2`), both thresholds, whether the theorem applies (the slides' condition with
    :math:`\rho_{\max}\le 1/2`, or the book's with :math:`c = 2`), the bound, the measured error and ``certified_error``: the probability of the inputs that
    the proof certifies (in a main part, :math:`D(x)\le\varepsilon`) and that :math:`G_f` misclassifies
    (0 whenever the proof is right).

    Args:
        sigma: :math:`\sigma`; main_mask: ``(K, N)`` indicator of the main parts :math:`C_k^0`.
        spread: ``(B, N)`` :math:`D(x_j)`; joint: ``(K, N)`` law of (label, input).
        centres: ``(B, K, d)``; predictions: ``(B, N)`` :math:`G_f(x_j)`; r: the norm of :math:`f`.

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("joint", joint, (None, None))
    n_classes, n = joint.shape
    check_shape("main_mask", main_mask, (n_classes, n))
    check_shape("spread", spread, (None, n))
    batch = spread.shape[0]
    check_shape("centres", centres, (batch, n_classes, None))
    check_shape("predictions", predictions, (batch, n))
    marginal = joint.sum(dim=0)
    zero = torch.zeros(batch, 1, dtype=spread.dtype, device=spread.device)
    epsilon = torch.cat([zero, spread], dim=1).sort(dim=1).values  # (B, C)
    above = spread[:, None, :] > epsilon[:, :, None]  # (B, C, N)
    r_eps = (above * marginal).sum(dim=-1)
    p_min = float(joint.sum(dim=1).min())
    rho_s = rho_max(sigma, r_eps, p_min, r, epsilon, r_coefficient=1)
    rho_b = rho_max(sigma, r_eps, p_min, r, epsilon, r_coefficient=2)
    delta_mu = centre_norm_deficit(centres, r)
    t_s = divergence_threshold(rho_s, delta_mu[:, None], r)
    t_b = divergence_threshold(rho_b, delta_mu[:, None], r)
    max_inner = _max_off_diagonal_inner(centres)
    condition = ((max_inner[:, None] < t_s) & (rho_s <= SLIDES_RHO_LIMIT)) | (max_inner[:, None] < t_b)
    classes = torch.arange(n_classes, device=joint.device)
    wrong = predictions[:, None, :] != classes[None, :, None]  # (B, K, N)
    error = (joint * wrong).sum(dim=(-1, -2))
    certified = main_mask[None, None] & ~above[:, :, None, :]  # (B, C, K, N)
    certified_error = (joint * certified * wrong[:, None]).sum(dim=(-1, -2))
    return Theorem1Scan(epsilon=epsilon, r_epsilon=r_eps, rho_max=rho_s, rho_book=rho_b, threshold=t_s,
                        threshold_book=t_b, delta_mu=delta_mu, max_inner_product=max_inner, condition=condition,
                        bound=theorem1_bound(sigma, r_eps), error=error, certified_error=certified_error)


# --------------------------------------------------------------------------------------------------
# The two losses and their decompositions
# --------------------------------------------------------------------------------------------------


def one_negative_info_nce(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    r"""Huang et al.'s InfoNCE: one negative, no temperature, every other batch item as the negative.

    .. math::
        \mathcal L = -\mathbb E\log\frac{e^{f(x_1)^\top f(x_2)}}{e^{f(x_1)^\top f(x_2)}+e^{f(x_1)^\top f(x^-)}}
        \approx \frac{1}{N(N-1)}\sum_{i\ne j}\operatorname{softplus}\big(z^{(1)\top}_i z^{(2)}_j - z^{(1)\top}_i z^{(2)}_i\big).

    Row ``j`` of ``z2`` is an augmented view of an input independent of input ``i``, so each term is
    an unbiased estimate of the population loss; averaging over all ``j != i`` reduces its variance.
    Source: Huang et al. (2023), slides ("Loss Functions").

    Args:
        z1, z2: ``(..., N, d)`` embeddings of two views of ``N >= 2`` inputs (a leading batch shape
            gives one loss per member).

    Raises:
        ValueError: for shapes that differ or fewer than two rows.
    """
    if not isinstance(z1, torch.Tensor) or z1.dim() < 2:
        raise ValueError(f"z1 must be a tensor of shape (..., N, d), got {getattr(z1, 'shape', None)}")
    check_shape("z2", z2, tuple(z1.shape))
    n = z1.shape[-2]
    if n < 2:
        raise ValueError(f"z1 must have at least 2 rows, got {n}")
    scores = z1 @ z2.transpose(-1, -2)
    logits = scores - scores.diagonal(dim1=-2, dim2=-1)[..., None]
    off = ~torch.eye(n, dtype=torch.bool, device=z1.device)
    return (F.softplus(logits) * off).sum(dim=(-1, -2)) / (n * (n - 1))


def second_moment_normalize(embeddings: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Huang et al.'s normalisation constraint :math:`\mathbb E_x\mathbb E_{x'\in A(x)} f_i(x')^2 = 1`.

    Returns :math:`\tilde f_i = f_i / \sqrt{\sum_n w_n f_i(x_n)^2}` (no centring), with uniform
    weights by default (a batch) or the law ``weights`` of the views (the population), for
    ``(..., n, d)`` embeddings (a leading batch shape normalises each member separately).

    Raises:
        ValueError: on shape mismatch or a feature that is identically zero.
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() < 2:
        raise ValueError(f"embeddings must be a tensor of shape (..., n, d), got {getattr(embeddings, 'shape', None)}")
    if weights is None:
        second_moment = embeddings.pow(2).mean(dim=-2, keepdim=True)
    else:
        check_shape("weights", weights, (embeddings.shape[-2],))
        second_moment = (weights[:, None] * embeddings.pow(2)).sum(dim=-2, keepdim=True)
    if (second_moment == 0).any():
        raise ValueError("embeddings has a feature that is identically zero; it cannot be normalised")
    return embeddings / second_moment.sqrt()


def _check_lattice_embeddings(embeddings: torch.Tensor, augmentation: RotationAugmentation) -> None:
    n = augmentation.data.n_points
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() not in (2, 3) or embeddings.shape[-2] != n:
        raise ValueError(f"embeddings must have shape ({n}, d) or (B, {n}, d), got {getattr(embeddings, 'shape', None)}")


class InfoNCEDecomposition(NamedTuple):
    r""":math:`\mathcal L_{\mathrm{InfoNCE}} = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}}` (population)."""

    loss: float | torch.Tensor
    alignment: float | torch.Tensor
    regulariser: float | torch.Tensor


def population_info_nce(embeddings: torch.Tensor, augmentation: RotationAugmentation) -> InfoNCEDecomposition:
    r"""Exact population one-negative InfoNCE and its split (book's convention), for :math:`\|f\| = r`.

    With :math:`s^+ = f(x_1)^\top f(x_2)` and :math:`s^- = f(x_1)^\top f(x^-)`, and
    :math:`s^+ = r^2 - \tfrac12\|f(x_1)-f(x_2)\|^2`,

    .. math::
        \mathcal L = \mathbb E\operatorname{softplus}(s^- - s^+)
        = \tfrac12\underbrace{\mathbb E\|f(x_1)-f(x_2)\|^2}_{\mathcal L_{\mathrm{align}}}
          + \underbrace{\mathbb E\log\big(e^{s^+}+e^{s^-}\big) - r^2}_{\mathcal L_{\mathrm{reg}}}.

    The expectation runs over the pair law :math:`Q` and the negative's view law :math:`q`.

    Args:
        embeddings: ``(N, d)`` :math:`f(x_j)` for all lattice points (floats are returned), or
            ``(B, N, d)`` for ``B`` encoders (``(B,)`` tensors are returned).
        augmentation: the augmentation (gives :math:`Q` and :math:`q`).

    Raises:
        ValueError: if ``embeddings`` does not have one row per lattice point.
    """
    _check_lattice_embeddings(embeddings, augmentation)
    pair = augmentation.pair_distribution
    rows, cols = pair.nonzero(as_tuple=True)
    weight = pair[rows, cols]
    negatives = augmentation.view_marginal.nonzero(as_tuple=True)[0]
    neg_weight = augmentation.view_marginal[negatives]
    f1, f2 = embeddings[..., rows, :], embeddings[..., cols, :]
    s_pos = (f1 * f2).sum(dim=-1)
    s_neg = f1 @ embeddings[..., negatives, :].transpose(-1, -2)
    loss = (F.softplus(s_neg - s_pos[..., None]) @ neg_weight) @ weight
    alignment = (f1 - f2).pow(2).sum(dim=-1) @ weight
    if embeddings.dim() == 2:
        loss, alignment = float(loss), float(alignment)
    return InfoNCEDecomposition(loss=loss, alignment=alignment, regulariser=loss - alignment / 2)


def population_cross_correlation(embeddings: torch.Tensor, augmentation: RotationAugmentation) -> torch.Tensor:
    r"""Huang et al.'s cross-correlation matrix, exactly: :math:`C = \tilde f^\top Q\,\tilde f` (``(d, d)``).

    :math:`C_{ij} = \mathbb E_x\mathbb E_{x_1,x_2\in A(x)}[\tilde f_i(x_1)\tilde f_j(x_2)]` with
    :math:`\tilde f` the second-moment normalisation of :func:`second_moment_normalize` under the
    view law :math:`q`. Since :math:`Q = B^\top\mathrm{diag}(p_X)B`, :math:`C` is symmetric PSD.

    ``embeddings`` is ``(N, d)`` or ``(B, N, d)`` (then ``C`` is ``(B, d, d)``).

    Raises:
        ValueError: if ``embeddings`` does not have one row per lattice point.
    """
    _check_lattice_embeddings(embeddings, augmentation)
    normalized = second_moment_normalize(embeddings, augmentation.view_marginal)
    return normalized.transpose(-1, -2) @ augmentation.pair_distribution @ normalized


def _log_expm1(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z > 30, z + torch.log1p(-torch.exp(-z)), torch.log(torch.expm1(z.clamp(1e-300, 30))))


def info_nce_pair_bound(budget: Any, p_k: Any, p_l: Any, r: Any) -> Any:
    r"""The InfoNCE divergence lemma solved for one pair: :math:`r^2 + \log\big(e^{B/(2p_kp_\ell)} - 1\big)`.

    It is the largest :math:`t` with :math:`2p_kp_\ell\,\varphi(t)\le B`, where
    :math:`\varphi(t) = \log(1 + e^{t - r^2})`. Floats, tensors (``-inf`` where :math:`B\le 0`)
    and SymPy expressions.
    """
    if is_symbolic(budget, p_k, p_l, r):
        import sympy

        return r**2 + sympy.log(sympy.exp(budget / (2 * p_k * p_l)) - 1)
    z = torch.as_tensor(budget / (2 * p_k * p_l), dtype=torch.float64) if not _is_tensor(budget, p_k, p_l) \
        else budget / (2 * p_k * p_l)
    out = torch.where(z > 0, r**2 + _log_expm1(z), torch.full_like(z, -math.inf))
    return float(out) if not _is_tensor(budget, p_k, p_l) else out


def info_nce_divergence_bound(loss: float | torch.Tensor, centres: torch.Tensor, class_weights: torch.Tensor,
                              r: float) -> torch.Tensor:
    r"""Book's lemma: class-centre inner products bounded by the InfoNCE regulariser (plus alignment).

    With :math:`\varphi(t) = \log(1+e^{t-r^2})` (convex, increasing) and :math:`s^+\le r^2`,
    :math:`\mathcal L = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}}
    \ge \mathbb E\varphi(s^-) \ge \sum_{k,\ell}p_kp_\ell\,\varphi(\mu_k^\top\mu_\ell)` (Jensen given
    the two classes, :math:`\mathbb E[s^-\mid k,\ell] = \mu_k^\top\mu_\ell`). Keeping the pair
    :math:`\{k,\ell\}` and the diagonal (:func:`info_nce_pair_bound`),

    .. math::
        \mu_k^\top\mu_\ell \le r^2 + \log\Big(\exp\frac{B}{2p_kp_\ell} - 1\Big),\qquad
        B = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}} - \sum_k p_k^2\,\varphi(\|\mu_k\|^2).

    Args:
        loss: the population loss :math:`\tfrac12\mathcal L_{\mathrm{align}}+\mathcal L_{\mathrm{reg}}`
            (a float, or a ``(B,)`` tensor for a batch of encoders).
        centres: ``(K, d)`` or ``(B, K, d)``; class_weights: ``(K,)``; r: the norm of :math:`f`.

    Returns:
        ``(..., K, K)`` bounds; the diagonal is ``+inf`` (no claim). ``-inf`` where :math:`B \le 0`
        (the lemma then says the loss is inconsistent with the centres).

    Raises:
        ValueError: on shape mismatch or ``r <= 0``.
    """
    if not isinstance(centres, torch.Tensor) or centres.dim() not in (2, 3) \
            or centres.shape[-2] != class_weights.shape[0]:
        raise ValueError(f"centres must have shape (..., {class_weights.shape[0]}, d), "
                         f"got {getattr(centres, 'shape', None)}")
    r = check_positive("r", r)
    phi = F.softplus(centres.pow(2).sum(dim=-1) - r**2)
    loss_t = torch.as_tensor(loss, dtype=centres.dtype, device=centres.device)
    budget = loss_t - (class_weights.pow(2) * phi).sum(dim=-1)
    bound = info_nce_pair_bound(budget[..., None, None], class_weights[:, None], class_weights[None, :], r)
    eye = torch.eye(class_weights.shape[0], dtype=torch.bool, device=centres.device)
    return bound.masked_fill(eye, math.inf)


def cross_correlation_pair_bound(regulariser: Any, diagonal_sq: Any, own: Any, p_k: Any, p_l: Any) -> Any:
    r"""The cross-correlation divergence lemma for one pair: :math:`\sqrt{(\mathcal L_{\mathrm{reg}} +
    \sum_iC_{ii}^2 - \sum_mp_m^2\|\tilde\mu_m\|^4)/(2p_kp_\ell)}`.

    Floats and tensors (a negative radicand, impossible for exact inputs, is clamped at 0) and
    SymPy expressions (unclamped).
    """
    radicand = (regulariser + diagonal_sq - own) / (2 * p_k * p_l)
    if is_symbolic(radicand):
        return _sqrt(radicand)
    if isinstance(radicand, torch.Tensor):
        return radicand.clamp_min(0).sqrt()
    return math.sqrt(max(radicand, 0.0))


def cross_correlation_divergence_bound(correlation: torch.Tensor, normalized_centres: torch.Tensor,
                                       class_weights: torch.Tensor) -> torch.Tensor:
    r"""Book's lemma: :math:`|\tilde\mu_k^\top\tilde\mu_\ell|` bounded through :math:`\mathcal L_{\mathrm{reg}}`.

    With :math:`g(x) = \mathbb E_{x'\in A(x)}\tilde f(x')`, :math:`C = \mathbb E_x g g^\top \succeq
    M = \sum_k p_k\tilde\mu_k\tilde\mu_k^\top \succeq 0` (the within-class covariances are PSD), and
    :math:`0\preceq M\preceq C \Rightarrow \|M\|_F^2\le\|C\|_F^2`. Expanding both norms
    (:func:`cross_correlation_pair_bound`),

    .. math::
        |\tilde\mu_k^\top\tilde\mu_\ell| \le \sqrt{\frac{\mathcal L_{\mathrm{reg}} + \sum_i C_{ii}^2
              - \sum_m p_m^2\|\tilde\mu_m\|^4}{2p_kp_\ell}},\qquad
        \mathcal L_{\mathrm{reg}} = \sum_i\sum_{j\ne i}C_{ij}^2 .

    When the classes collapse onto points, :math:`C = M` and the radicand equals
    :math:`\sum_{m\ne n}p_mp_n(\tilde\mu_m^\top\tilde\mu_n)^2/(2p_kp_\ell)`: for two classes the
    bound is *attained*. The slides' form :math:`\sqrt{\mathcal L_{\mathrm{reg}}/(2p_kp_\ell)}` is
    not a bound: with :math:`d = 1` and both classes collapsed, :math:`\mathcal L_{\mathrm{reg}} = 0`
    while :math:`|\tilde\mu_0\tilde\mu_1| = 1`.

    Args:
        correlation: ``(d, d)`` or ``(B, d, d)`` :math:`C` of :func:`population_cross_correlation`.
        normalized_centres: ``(..., K, d)`` centres :math:`\tilde\mu_k` of the normalised :math:`\tilde f`.
        class_weights: ``(K,)``.

    Returns:
        ``(..., K, K)`` bounds, diagonal ``+inf``.

    Raises:
        ValueError: on shape mismatch.
    """
    if not isinstance(correlation, torch.Tensor) or correlation.dim() not in (2, 3):
        raise ValueError(f"correlation must be (d, d) or (B, d, d), got {getattr(correlation, 'shape', None)}")
    if normalized_centres.dim() != correlation.dim() or normalized_centres.shape[-2:] != (
            class_weights.shape[0], correlation.shape[-1]):
        raise ValueError(f"normalized_centres must have shape (..., {class_weights.shape[0]}, "
                         f"{correlation.shape[-1]}), got {tuple(normalized_centres.shape)}")
    diagonal_sq = correlation.diagonal(dim1=-2, dim2=-1).pow(2).sum(dim=-1)
    off = correlation - torch.diag_embed(correlation.diagonal(dim1=-2, dim2=-1))
    regulariser = off.pow(2).sum(dim=(-1, -2))
    own = (class_weights.pow(2) * normalized_centres.pow(2).sum(dim=-1).pow(2)).sum(dim=-1)
    bound = cross_correlation_pair_bound(regulariser[..., None, None], diagonal_sq[..., None, None],
                                         own[..., None, None], class_weights[:, None], class_weights[None, :])
    eye = torch.eye(class_weights.shape[0], dtype=torch.bool, device=correlation.device)
    return bound.masked_fill(eye, math.inf)


