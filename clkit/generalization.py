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
  :math:`\rho_{\max}` (:func:`check_theorem1` certifies an encoder when either version applies).

The synthetic data sets (:class:`AngularLatticeClasses`, :class:`BridgedLatticeClasses`) put the
inputs on a lattice of ``N`` points of the unit circle, and the augmentation (:class:`RotationAugmentation`) rotates by a whole
number of lattice steps in :math:`\{-m,\dots,m\}`, uniformly, optionally composed with a rotation
by a multiple of a *jump* (which links the parts of a class when classes come in several parts).
Every population quantity is then a finite sum and is computed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from ._validation import check_finite, check_nonnegative, check_positive, check_probability_vector, check_shape
from .device import make_generator
from .progress_bars import progress as progress_bar
from .symbolic import is_symbolic

__all__ = [
    "AngularLatticeClasses",
    "BridgedLatticeClasses",
    "RotationAugmentation",
    "augmented_distance",
    "class_centres",
    "nearest_centre_predict",
    "nearest_centre_error",
    "min_arc_classifier_error",
    "augmentation_spread",
    "alignment_failure_probability",
    "alignment_tail_bound",
    "centre_norm_deficit",
    "rho_max",
    "divergence_threshold",
    "theorem1_bound",
    "Theorem1Check",
    "check_theorem1",
    "Theorem1Scan",
    "theorem1_scan",
    "AdversarialSearch",
    "theorem1_adversarial_search",
    "one_negative_info_nce",
    "second_moment_normalize",
    "InfoNCEDecomposition",
    "population_info_nce",
    "population_cross_correlation",
    "cross_correlation_terms",
    "info_nce_pair_bound",
    "info_nce_divergence_bound",
    "cross_correlation_pair_bound",
    "cross_correlation_divergence_bound",
    "LatticeEncoders",
    "LatticeDiagnostics",
    "lattice_diagnostics",
    "train_lattice_encoders",
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
class AngularLatticeClasses(_LatticeLaws):
    r"""``K`` classes on a lattice of ``N`` points of the unit circle (the book's synthetic data set).

    Lattice point :math:`j` is :math:`x_j = (\cos 2\pi j/N, \sin 2\pi j/N)`. Class :math:`k` has
    weight :math:`p_k` and :math:`P` parts (``n_parts``) centred at
    :math:`c_{k,p} = (k + pK)\,N/(KP)`, :math:`p = 0,\dots,P-1` (so with :math:`P > 1` the parts of
    the classes interleave around the circle), and the discretised, truncated Gaussian law

    .. math::
        \mathbb P[x = x_j \mid k] \propto \exp\Big(-\frac{\mathrm{d}_k(j)^2}{2s^2}\Big)\,
        \mathbb 1[\mathrm{d}_k(j)\le W],\qquad \mathrm{d}_k(j) = \min_p \mathrm{d}(j, c_{k,p}),

    with :math:`\mathrm{d}` the circular distance in lattice steps, so the supports are disjoint
    arcs, each part has mass :math:`1/P` of its class, and the label is a function of the input.
    With :math:`P = 1` the centre of class :math:`k` is :math:`c_k = kN/K`.

    Args:
        n_points: ``N``, a multiple of ``K * n_parts``.
        weights: ``(K,)`` class probabilities :math:`p_k`; fixes dtype and device.
        class_std: :math:`s > 0` in lattice steps.
        half_width: :math:`W \ge 0`, with :math:`2W + 1 \le N/(KP)` (disjoint supports).
        n_parts: :math:`P \ge 1`, the number of parts of each class (default 1).

    Raises:
        ValueError: naming the argument that is invalid.
    """

    n_points: int
    weights: torch.Tensor
    class_std: float
    half_width: int
    n_parts: int = 1

    def __post_init__(self) -> None:
        check_probability_vector("weights", self.weights)
        if not self.weights.is_floating_point():
            raise ValueError(f"weights must be floating point, got {self.weights.dtype}")
        _check_int("n_parts", self.n_parts, 1)
        arcs = self.weights.shape[0] * self.n_parts
        _check_int("n_points", self.n_points, 2)
        if self.n_points % arcs:
            raise ValueError(f"n_points must be a multiple of K * n_parts = {arcs}, got {self.n_points}")
        check_positive("class_std", self.class_std)
        _check_int("half_width", self.half_width, 0)
        if 2 * self.half_width + 1 > self.n_points // arcs:
            raise ValueError(f"half_width must satisfy 2W+1 <= N/(K P) = {self.n_points // arcs}, got {self.half_width}")

    @property
    def n_classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def centres(self) -> torch.Tensor:
        """``(K,)`` lattice indices :math:`c_{k,0} = kN/(KP)` of the first part of each class."""
        return self.part_centres[:, 0]

    @property
    def part_centres(self) -> torch.Tensor:
        """``(K, P)`` lattice indices :math:`c_{k,p} = (k + pK)N/(KP)` of the parts of each class."""
        k = torch.arange(self.n_classes, device=self.weights.device)
        p = torch.arange(self.n_parts, device=self.weights.device)
        return (k[:, None] + p[None, :] * self.n_classes) * (self.n_points // (self.n_classes * self.n_parts))

    def circular_offsets(self) -> torch.Tensor:
        """``(K, N)`` signed circular offsets :math:`j - c_{k,p}` to the nearest part of class ``k``.

        In lattice steps, in ``[-N/2, N/2)``; with one part, :math:`j - c_k`.
        """
        j = torch.arange(self.n_points, device=self.weights.device)
        n = self.n_points
        offsets = (j[None, None, :] - self.part_centres[:, :, None] + n // 2) % n - n // 2  # (K, P, N)
        nearest = offsets.abs().argmin(dim=1, keepdim=True)
        return offsets.gather(1, nearest).squeeze(1)

    def class_distributions(self) -> torch.Tensor:
        """``(K, N)`` conditional laws :math:`\\mathbb P[x = x_j\\mid k]` (rows sum to 1)."""
        offset = self.circular_offsets().to(self.weights.dtype)
        density = torch.exp(-offset.pow(2) / (2 * self.class_std**2)) * (offset.abs() <= self.half_width)
        return density / density.sum(dim=1, keepdim=True)


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


def min_arc_classifier_error(embeddings: torch.Tensor, joint: torch.Tensor) -> float:
    r"""Smallest error of any *arc classifier* of a planar embedding on a circle (two classes; the book's).

    When every :math:`f(x)` lies on the circle :math:`\|f\| = r` of :math:`\mathbb R^2`, every
    two-class linear rule :math:`\mathbb 1[w^\top f(x) > b]`, the nearest-centre rule
    :math:`G_f` among them (:math:`\|f-\mu_0\|^2 \le \|f-\mu_1\|^2` is a half-plane), predicts class
    0 on an arc of the circle and class 1 on the rest. Sorting the points by angle, an arc is a
    cyclic run :math:`S` of consecutive points, and

    .. math::
        \min_S\Big(\sum_{j\in S}\mathbb P[x_j, y = 1] + \sum_{j\notin S}\mathbb P[x_j, y = 0]\Big)
        \le \mathrm{Err}(G_f),

    the minimum running over all runs, the empty one and the full circle. Points with equal angles
    may be split by a run, which only lowers the minimum, so it stays a lower bound.

    Args:
        embeddings: ``(N, 2)`` embeddings of the lattice points (of equal norm).
        joint: ``(2, N)`` joint law of (label, input).

    Returns:
        The minimum error (a float).

    Raises:
        ValueError: unless ``embeddings`` is ``(N, 2)`` and ``joint`` is ``(2, N)``.
    """
    check_shape("embeddings", embeddings, (None, 2))
    check_shape("joint", joint, (2, embeddings.shape[0]))
    order = torch.atan2(embeddings[:, 1], embeddings[:, 0]).argsort()
    # gain of putting point j in the class-0 arc: P[x_j, y=0] - P[x_j, y=1]
    gain = (joint[0] - joint[1])[order]
    n = gain.shape[0]
    doubled = torch.cat([gain, gain])
    prefix = torch.cat([torch.zeros(1, dtype=gain.dtype, device=gain.device), doubled.cumsum(0)])
    start = torch.arange(n, device=gain.device)[:, None]
    length = torch.arange(n + 1, device=gain.device)[None, :]
    run_gain = prefix[start + length] - prefix[start]  # (n, n+1): gain of the run of `length` from `start`
    return float(joint[0].sum() - run_gain.max())


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


def alignment_failure_probability(spread: torch.Tensor, probabilities: torch.Tensor, epsilon: float) -> float:
    r""":math:`R_\varepsilon = \mathbb P[D(x) > \varepsilon]` (the book's reconstruction of Huang et al.'s).

    Args:
        spread: ``(n,)`` :math:`D(x)` of :func:`augmentation_spread`.
        probabilities: ``(n,)`` law of the inputs.
        epsilon: :math:`\varepsilon\ge 0`.

    Raises:
        ValueError: on shape mismatch or ``epsilon < 0``.
    """
    check_shape("spread", spread, (None,))
    check_shape("probabilities", probabilities, (spread.shape[0],))
    epsilon = check_nonnegative("epsilon", epsilon)
    return float((probabilities * (spread > epsilon)).sum())


def alignment_tail_bound(alignment: float, n_views: int, epsilon: float) -> float:
    r"""Markov bound of :math:`R_\varepsilon` by the alignment (book's lemma, finite uniform :math:`A`).

    For :math:`M` views :math:`f_1,\dots,f_M` of one input with mean :math:`\bar f`,
    :math:`\max_{i,j}\|f_i-f_j\|^2 \le 2\max_{i\ne j}(\|f_i-\bar f\|^2+\|f_j-\bar f\|^2)
    \le 2\sum_i\|f_i-\bar f\|^2 = M\,\mathbb E_{i,j}\|f_i-f_j\|^2`, hence

    .. math::
        R_\varepsilon \le \frac{M\,\mathcal L_{\mathrm{align}}}{\varepsilon^2},\qquad
        \mathcal L_{\mathrm{align}} = \mathbb E_x\mathbb E_{x_1,x_2\in A(x)}\|f(x_1)-f(x_2)\|^2 .

    Raises:
        ValueError: if ``alignment < 0``, ``n_views < 1`` or ``epsilon <= 0``.
    """
    alignment = check_nonnegative("alignment", alignment)
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


@dataclass(frozen=True)
class Theorem1Check:
    """Theorem 1 evaluated for one encoder and one :math:`\\varepsilon` (all fields are floats/bools).

    ``rho_max``/``threshold`` use the slides' coefficient :math:`c=1`, ``rho_book``/``threshold_book``
    the book's :math:`c=2`; ``condition_holds`` says the theorem applies: the slides' condition with
    :math:`\\rho_{\\max}\\le 1/2`, or the book's condition.
    """

    epsilon: float
    r_epsilon: float
    rho_max: float
    rho_book: float
    delta_mu: float
    threshold: float
    threshold_book: float
    max_inner_product: float
    condition_holds: bool
    bound: float

    @property
    def margin(self) -> float:
        """How far the condition is met: ``max(threshold - max mu_k.mu_l`` over the versions that apply)."""
        slides = self.threshold - self.max_inner_product if self.rho_max <= SLIDES_RHO_LIMIT else -math.inf
        return max(slides, self.threshold_book - self.max_inner_product)


def _max_off_diagonal_inner(centres: torch.Tensor) -> torch.Tensor:
    gram = centres @ centres.transpose(-1, -2)
    eye = torch.eye(gram.shape[-1], dtype=torch.bool, device=gram.device)
    return gram.masked_fill(eye, -math.inf).amax(dim=(-1, -2))


def check_theorem1(sigma: float, spread: torch.Tensor, probabilities: torch.Tensor, class_weights: torch.Tensor,
                   centres: torch.Tensor, r: float, epsilon: float, lipschitz: float = 0.0,
                   delta: float = 0.0) -> Theorem1Check:
    r"""Evaluate Theorem 1 (the book's proved versions) for one encoder at one :math:`\varepsilon`.

    Condition: :math:`\max_{k\ne\ell}\mu_k^\top\mu_\ell < r^2(1-\rho_{\max}-\sqrt{2\rho_{\max}}-\Delta_\mu/2)`
    with the slides' :math:`\rho_{\max}` (:math:`c=1`) when it is at most 1/2, or with the book's
    (:math:`c=2`); conclusion: :math:`\mathrm{Err}(G_f) \le (1-\sigma) + R_\varepsilon` (``bound``).

    Args:
        sigma: :math:`\sigma` of a :math:`(\sigma,\delta)`-augmentation.
        spread: ``(n,)`` :math:`D(x)`; probabilities: ``(n,)`` law of the inputs.
        class_weights: ``(K,)`` :math:`p_k`; centres: ``(K, d)`` :math:`\mu_k`.
        r: the norm of :math:`f`; epsilon: :math:`\varepsilon`; lipschitz, delta: :math:`L,\delta`.

    Raises:
        ValueError: as the helpers it calls.
    """
    check_shape("centres", centres, (class_weights.shape[0], None))
    r_eps = alignment_failure_probability(spread, probabilities, epsilon)
    p_min = float(class_weights.min())
    rho_s = rho_max(sigma, r_eps, p_min, r, epsilon, lipschitz, delta, r_coefficient=1)
    rho_b = rho_max(sigma, r_eps, p_min, r, epsilon, lipschitz, delta, r_coefficient=2)
    delta_mu = centre_norm_deficit(centres, r)
    t_s, t_b = divergence_threshold(rho_s, delta_mu, r), divergence_threshold(rho_b, delta_mu, r)
    max_inner = float(_max_off_diagonal_inner(centres))
    holds = (max_inner < t_s and rho_s <= SLIDES_RHO_LIMIT) or max_inner < t_b
    return Theorem1Check(epsilon=float(epsilon), r_epsilon=r_eps, rho_max=rho_s, rho_book=rho_b, delta_mu=delta_mu,
                         threshold=t_s, threshold_book=t_b, max_inner_product=max_inner, condition_holds=bool(holds),
                         bound=theorem1_bound(sigma, r_eps))


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
    :math:`c = 1, 2`), both thresholds, whether the theorem applies (as in :func:`check_theorem1`),
    the bound, the measured error and ``certified_error``: the probability of the inputs that
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


class AdversarialSearch(NamedTuple):
    """Outcome of :func:`theorem1_adversarial_search` (counts over every configuration evaluated)."""

    r_coefficient: float
    n_evaluated: int
    n_condition: int
    n_violations: int
    n_violations_rho_le_half: int
    max_rho_with_condition: float
    closest_approach: float
    best_score: float


def _chord(angle: torch.Tensor) -> torch.Tensor:
    return 2 * (angle / 2).sin().abs()


def _adversarial_configurations(params: torch.Tensor, n_classes: int, n_views: int, r_coefficient: float
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate the configurations ``params`` (see :func:`theorem1_adversarial_search`).

    Returns ``(condition, misclassified margin of the certified input a, rho, condition margin)``.
    Computed parameter by parameter on the transpose of ``params`` (each a contiguous row) and
    coordinate by coordinate: on ``(n, 11)`` columns, reductions over 2 or 3 entries per row
    (softmax, sums) are 5-10x slower than the same arithmetic on rows.
    """
    k = n_classes
    cols = params.T.contiguous()  # (dim, n)
    alpha, beta, gamma = cols[0:3].softmax(dim=0)  # masses of the inputs of class 0
    weights = cols[3:3 + k].softmax(dim=0)  # (K, n): p_0 .. p_{K-1}
    theta_b, theta_c, theta_c2 = cols[3 + k], cols[4 + k], cols[5 + k]
    phi = cols[6 + k:5 + 2 * k]  # (K-1, n) angles of the other classes
    psi = cols[5 + 2 * k:4 + 3 * k]  # (K-1, n) their spreads
    epsilon = 2 * cols[4 + 3 * k].sigmoid()
    shared, moved = beta / n_views, beta * (n_views - 1) / n_views  # views of b at 0 and at theta_b
    # mu_0 = (alpha + beta/M) e_0 + beta (M-1)/M u(theta_b) + gamma/2 (u(theta_c) + u(theta_c2))
    mu0_x = (alpha + shared) + moved * theta_b.cos() + (gamma / 2) * (theta_c.cos() + theta_c2.cos())
    mu0_y = moved * theta_b.sin() + (gamma / 2) * (theta_c.sin() + theta_c2.sin())
    other_x = ((phi.cos() + (phi + psi).cos()) / 2).T  # (n, K-1)
    other_y = ((phi.sin() + (phi + psi).sin()) / 2).T
    centres = torch.stack([torch.cat([mu0_x[:, None], other_x], dim=1),
                           torch.cat([mu0_y[:, None], other_y], dim=1)], dim=-1)  # (n, K, 2)
    d_b, d_c, d_other = _chord(theta_b), _chord(theta_c - theta_c2), _chord(psi)
    r_eps = weights[0] * (beta * (d_b > epsilon) + gamma * (d_c > epsilon)) \
        + (weights[1:] * (d_other > epsilon)).sum(dim=0)
    sigma = alpha + beta  # the other classes are their own main parts (sigma_l = 1)
    rho = rho_max(sigma, r_eps.clamp(0, 1), weights.min(dim=0).values, 1.0, epsilon, r_coefficient=r_coefficient)
    threshold = divergence_threshold(rho, centre_norm_deficit(centres, 1.0), 1.0)
    margin = threshold - _max_off_diagonal_inner(centres)
    # input a (in the main part, all views at angle 0, so D(a) = 0 <= eps): misclassified when
    # some other centre is at least as close as mu_0
    dist_0 = (1 - mu0_x).pow(2) + mu0_y.pow(2)
    dist_other = (1 - other_x).pow(2) + other_y.pow(2)
    misclassified = dist_0 - dist_other.min(dim=1).values
    return margin > 0, misclassified, rho, margin


def theorem1_adversarial_search(n_configurations: int, generator: torch.Generator, *, r_coefficient: float,
                                n_classes: int = 2, n_rounds: int = 12, n_restarts: int = 16,
                                n_views: int = 8, dtype: torch.dtype = torch.float64) -> AdversarialSearch:
    r"""Search for configurations that break Theorem 1's certificate with coefficient :math:`c`.

    A configuration (``r = 1``, :math:`d = 2`) is a finite instance built to give an adversary the
    freedom the proof allows. Class 0 has three inputs: *a* (mass :math:`\alpha`, all :math:`M` views
    embedded at angle 0, so :math:`D(a) = 0`), *b* (mass :math:`\beta`, one view shared with *a*, so
    :math:`d_A(a, b) = 0`, and :math:`M-1` views at angle :math:`\theta_b`) and *c* (mass
    :math:`\gamma`, outside the main part :math:`\{a, b\}`, views at two free angles). Every other
    class :math:`\ell` is one input with views at two free angles. Class weights, masses,
    angles and :math:`\varepsilon` are free; :math:`\sigma = \alpha+\beta`, :math:`R_\varepsilon`,
    :math:`\mu_k`, :math:`\Delta_\mu` and the condition (:func:`rho_max` with ``r_coefficient``,
    :func:`divergence_threshold`) are computed exactly. A *violation* is a configuration where the
    condition holds and the certified input *a* is misclassified by the nearest-centre rule.

    The search splits ``n_configurations`` into ``n_restarts`` independent populations, draws them
    at random, then for ``n_rounds`` replaces each population by perturbations (shrinking noise) of
    its best 5 %. Even populations rank by ``min(condition margin, misclassification margin)``
    (they approach a violation from both sides), odd ones by the misclassification margin among
    configurations that meet the condition (they explore the region the theorem covers). Restarts
    matter: a single population either finds the basin of violations or settles elsewhere.

    Returns:
        Counts over all evaluated configurations: where the condition holds, violations, violations
        with :math:`\rho_{\max}\le 1/2`; the largest :math:`\rho_{\max}` with the condition; the
        *closest approach*, the largest :math:`\|f(a)-\mu_0\|^2-\min_{\ell}\|f(a)-\mu_\ell\|^2`
        where the condition holds (positive: a violation); the best score.

    Raises:
        ValueError: for invalid sizes or a negative coefficient.
    """
    _check_int("n_configurations", n_configurations, 20)
    _check_int("n_classes", n_classes, 2)
    _check_int("n_rounds", n_rounds, 0)
    _check_int("n_views", n_views, 2)
    r_coefficient = check_nonnegative("r_coefficient", r_coefficient)
    _check_int("n_restarts", n_restarts, 1)
    dim = 5 + 3 * n_classes
    device = generator.device
    size = max(20, n_configurations // n_restarts)
    keep = max(1, size // 20)
    totals = [0, 0, 0, 0]
    max_rho, best, closest = -math.inf, -math.inf, -math.inf
    # independent populations, evolved side by side: (restarts, size, dim)
    # the random draws in float32 (5x faster than float64 draws on a CPU; the search only needs
    # random points, and everything is evaluated in ``dtype``)
    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    params = noise(n_restarts, size, dim) * 2
    odd = (torch.arange(n_restarts, device=device) % 2 == 1)[:, None]
    for round_ in range(n_rounds + 1):
        condition, misclassified, rho, margin = _adversarial_configurations(params.reshape(-1, dim), n_classes,
                                                                           n_views, r_coefficient)
        violation = condition & (misclassified > 0)
        totals[0] += condition.numel()
        totals[1] += int(condition.sum())
        totals[2] += int(violation.sum())
        totals[3] += int((violation & (rho <= SLIDES_RHO_LIMIT)).sum())
        if bool(condition.any()):
            max_rho = max(max_rho, float(rho[condition].max()))
            closest = max(closest, float(misclassified[condition].max()))
        # even populations approach a violation from both sides (min of the two margins); odd ones
        # stay inside the condition and get as close to a misclassification as they can
        both = torch.minimum(margin, misclassified).reshape(n_restarts, size)
        inside = torch.where(margin > 0, misclassified, margin - 4).reshape(n_restarts, size)
        score = torch.where(odd, inside, both)
        best = max(best, float(score.max()))
        if round_ == n_rounds:
            break
        elite = params.gather(1, score.topk(keep, dim=1).indices[..., None].expand(-1, -1, dim))
        pick = torch.randint(0, keep, (n_restarts, size), generator=generator, device=device)
        parents = elite.gather(1, pick[..., None].expand(-1, -1, dim))
        scale = 0.5 * 0.7**round_
        params = parents + scale * noise(*parents.shape)
    return AdversarialSearch(r_coefficient=r_coefficient, n_evaluated=totals[0], n_condition=totals[1],
                             n_violations=totals[2], n_violations_rho_le_half=totals[3],
                             max_rho_with_condition=max_rho, closest_approach=closest, best_score=best)


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


def cross_correlation_terms(correlation: torch.Tensor) -> tuple[Any, Any]:
    r"""Split of the cross-correlation loss: :math:`(\sum_i(1-C_{ii})^2,\ \sum_i\sum_{j\ne i}C_{ij}^2)`.

    The first term vanishes iff every feature is perfectly aligned
    (:math:`C_{ii} = 1 - \tfrac12\mathbb E(\tilde f_i(x_1)-\tilde f_i(x_2))^2` under the constraint);
    the second is the regulariser :math:`\mathcal L_{\mathrm{reg}}` (without the weight :math:`\lambda`).

    Floats for a ``(d, d)`` matrix, ``(B,)`` tensors for a ``(B, d, d)`` batch.

    Raises:
        ValueError: unless ``correlation`` is a square matrix (or a batch of them).
    """
    if not isinstance(correlation, torch.Tensor) or correlation.dim() not in (2, 3) \
            or correlation.shape[-1] != correlation.shape[-2]:
        raise ValueError(f"correlation must be a square matrix (d, d) or a batch (B, d, d), "
                         f"got {getattr(correlation, 'shape', None)}")
    diagonal = correlation.diagonal(dim1=-2, dim2=-1)
    off = correlation - torch.diag_embed(diagonal)
    alignment, regulariser = (1 - diagonal).pow(2).sum(dim=-1), off.pow(2).sum(dim=(-1, -2))
    if correlation.dim() == 2:
        return float(alignment), float(regulariser)
    return alignment, regulariser


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


# --------------------------------------------------------------------------------------------------
# Training on the lattice, several encoders at once, with exact diagnostics
# --------------------------------------------------------------------------------------------------


class LatticeEncoders(torch.nn.Module):
    r"""``B`` independent two-hidden-layer MLPs on the circle, normalised to radius :math:`r`, as one batched model.

    Member :math:`b` computes :math:`f_b(x) = r\,h_b(x)/\|h_b(x)\|` with
    :math:`h_b = W_3^{(b)}\,\mathrm{SiLU}(W_2^{(b)}\,\mathrm{SiLU}(W_1^{(b)}\phi(x) + c_1^{(b)}) + c_2^{(b)}) + c_3^{(b)}`,
    where :math:`\phi(x_j) = (\cos 2\pi hj/N, \sin 2\pi hj/N)_{h=1..F}` are the first ``frequencies``
    harmonics of the lattice point's angle (``F = 1``: its coordinates).
    The weights of member :math:`b` are drawn with its own generator ``make_generator(seeds[b])``
    (uniform :math:`\pm 1/\sqrt{\text{fan-in}}`, as PyTorch's default), so a member does not
    depend on the others; all members train in the same batched matrix products. ``radius`` may be
    changed during training (a schedule of the inverse temperature).

    Raises:
        ValueError: for non-positive sizes or radius, or an empty ``seeds``.
    """

    def __init__(self, seeds: list[int], n_points: int, hidden: int, out_dim: int, radius: float,
                 frequencies: int = 1, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not seeds:
            raise ValueError("seeds must name at least one encoder")
        _check_int("n_points", n_points, 2)
        _check_int("hidden", hidden, 0)
        _check_int("out_dim", out_dim, 1)
        _check_int("frequencies", frequencies, 1)
        self.radius = check_positive("radius", radius)
        angle = 2 * math.pi * torch.arange(n_points, dtype=dtype, device=device) / n_points
        harmonics = torch.arange(1, frequencies + 1, dtype=dtype, device=device)
        self.register_buffer("features", torch.cat([torch.cos(angle[:, None] * harmonics),
                                                    torch.sin(angle[:, None] * harmonics)], dim=1))
        sizes = [(2 * frequencies, hidden), (hidden, hidden), (hidden, out_dim)]
        weights: list[list[torch.Tensor]] = [[], [], []]
        biases: list[list[torch.Tensor]] = [[], [], []]
        for seed in seeds if hidden else []:
            generator = make_generator(seed, device if device is not None else "cpu")
            for i, (fan_in, fan_out) in enumerate(sizes):
                bound = 1 / math.sqrt(fan_in)
                w = torch.empty(fan_in, fan_out, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
                c = torch.empty(1, fan_out, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
                weights[i].append(w)
                biases[i].append(c)
        if hidden == 0:  # a free embedding of every lattice point
            tables = [torch.randn(n_points, out_dim, dtype=dtype, device=device,
                                  generator=make_generator(seed, device if device is not None else "cpu"))
                      for seed in seeds]
            self.table = torch.nn.Parameter(torch.stack(tables))
            self.weights, self.biases = torch.nn.ParameterList(), torch.nn.ParameterList()
            return
        self.table = None
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.stack(w)) for w in weights])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.stack(c)) for c in biases])

    @property
    def n_models(self) -> int:
        return int((self.table if self.table is not None else self.weights[0]).shape[0])

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """``(n,)`` (shared) or ``(B, n)`` lattice indices to ``(B, n, out_dim)`` embeddings of norm ``radius``."""
        if self.table is not None:
            rows = torch.arange(self.n_models, device=indices.device).reshape(-1, *([1] * max(indices.dim(), 1)))
            out = self.table[rows, indices] if indices.dim() > 1 else self.table[:, indices]
            return self.radius * F.normalize(out, dim=-1)
        h = F.silu(self.features[indices] @ self.weights[0] + self.biases[0])
        h = F.silu(h @ self.weights[1] + self.biases[1])
        return self.radius * F.normalize(h @ self.weights[2] + self.biases[2], dim=-1)


@dataclass(frozen=True)
class LatticeDiagnostics:
    """Exact population quantities of ``B`` encoders on the lattice (see :func:`lattice_diagnostics`).

    Tensor fields have a leading dimension ``B``: embeddings ``(B, N, d)``, centres and normalised
    centres ``(B, K, d)``, spread and predictions ``(B, N)``, error ``(B,)``, correlation ``(B, d, d)``;
    ``info_nce`` holds ``(B,)`` tensors.
    """

    step: int
    radius: float
    embeddings: torch.Tensor
    centres: torch.Tensor
    normalized_centres: torch.Tensor
    spread: torch.Tensor
    predictions: torch.Tensor
    error: torch.Tensor
    info_nce: InfoNCEDecomposition
    correlation: torch.Tensor

    @property
    def max_inner_product(self) -> torch.Tensor:
        """``(B,)`` :math:`\\max_{k\\ne\\ell}\\mu_k^\\top\\mu_\\ell`, the divergence of the class centres."""
        return _max_off_diagonal_inner(self.centres)


def lattice_diagnostics(encoders: LatticeEncoders, augmentation: RotationAugmentation, step: int = 0
                        ) -> LatticeDiagnostics:
    r"""Embed every lattice point by every encoder and compute, exactly: :math:`\mu_k`, :math:`\tilde\mu_k`,
    :math:`D(x)`, :math:`G_f`, :math:`\mathrm{Err}(G_f)`, the InfoNCE split and the cross-correlation
    matrix :math:`C`, each with a leading dimension ``B``."""
    data = augmentation.data
    with torch.no_grad():
        f = encoders(torch.arange(data.n_points, device=data.weights.device)).to(data.weights.dtype)
        f = encoders.radius * F.normalize(f, dim=-1)  # exactly on the sphere in the data's precision
    centres = class_centres(f, augmentation.class_view_distributions)
    normalized = class_centres(second_moment_normalize(f, augmentation.view_marginal),
                               augmentation.class_view_distributions)
    spread = augmentation_spread(f[:, augmentation.view_indices])
    predictions = nearest_centre_predict(f, centres)
    return LatticeDiagnostics(step=step, radius=encoders.radius, embeddings=f, centres=centres,
                              normalized_centres=normalized, spread=spread, predictions=predictions,
                              error=nearest_centre_error(predictions, data.joint()),
                              info_nce=population_info_nce(f, augmentation),
                              correlation=population_cross_correlation(f, augmentation))


def _adam_cosine_step(params: list[torch.Tensor], grads: tuple[torch.Tensor, ...], first: list[torch.Tensor],
                      second: list[torch.Tensor], step: int, steps: int, lr: float) -> None:
    """Step ``step`` (1-based) of ``steps`` of Adam with cosine-decayed learning rate, in place.

    The update of ``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8; Kingma & Ba 2015, Algorithm 1)
    at the rate ``lr (1 + cos(pi (step - 1) / steps)) / 2`` of ``CosineAnnealingLR`` (the tests
    compare the two). The same elementwise operations on all tensors at once (``torch._foreach_*``,
    as ``torch.optim.Adam(foreach=True)``): 8 calls a step instead of 5 per tensor.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    rate = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    with torch.no_grad():
        torch._foreach_mul_(first, beta1)
        torch._foreach_add_(first, grads, alpha=1 - beta1)
        torch._foreach_mul_(second, beta2)
        torch._foreach_addcmul_(second, grads, grads, value=1 - beta2)
        denominator = torch._foreach_sqrt(second)
        torch._foreach_div_(denominator, math.sqrt(bias2))
        torch._foreach_add_(denominator, eps)
        torch._foreach_addcdiv_(params, first, denominator, value=-rate / bias1)


def _silu_derivative(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


def _loss_and_embedding_gradient(z1: torch.Tensor, z2: torch.Tensor, loss: str, lam: float, off: torch.Tensor,
                                 with_value: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    r"""The training loss of each member (``(B,)``; ``None`` unless ``with_value``) and its gradients in
    ``z1``, ``z2`` (``(B, n, d)``).

    InfoNCE (:func:`one_negative_info_nce`): with :math:`S = z_1z_2^\top`,
    :math:`P_{ij}=\sigma(S_{ij}-S_{ii})/(n(n-1))` off the diagonal, :math:`\partial\mathcal L/\partial S
    = P-\operatorname{diag}(P\mathbf 1)`. Cross-correlation with the second-moment constraint: with
    :math:`s` the root mean square of each coordinate over both views, :math:`y=z/s`,
    :math:`C=y_1^\top y_2/n` and :math:`G=\partial\mathcal L/\partial C`, the gradient in :math:`y` is
    :math:`(y_2G^\top, y_1G)/n` and in :math:`z`, :math:`g_y/s-z\,\sum_i g_{y,i}z_i/(2n\,s^3)`.
    (The tests compare both with autograd.)
    """
    n = z1.shape[-2]
    if loss == "info_nce":
        scores = z1 @ z2.transpose(-1, -2)
        logits = scores - scores.diagonal(dim1=-2, dim2=-1)[..., None]
        value = (F.softplus(logits) * off).sum(dim=(-1, -2)) / (n * (n - 1)) if with_value else None
        weight = torch.sigmoid(logits) * off / (n * (n - 1))
        grad_scores = weight - torch.diag_embed(weight.sum(dim=-1))
        return value, grad_scores @ z2, grad_scores.transpose(-1, -2) @ z1
    both = torch.cat([z1, z2], dim=-2)
    scale = both.pow(2).mean(dim=-2, keepdim=True).sqrt()
    y1, y2 = z1 / scale, z2 / scale
    c = y1.transpose(-1, -2) @ y2 / n
    diagonal = c.diagonal(dim1=-2, dim2=-1)
    value = (1 - diagonal).pow(2).sum(dim=-1) + lam * (c * off).pow(2).sum(dim=(-1, -2)) if with_value else None
    grad_c = 2 * lam * c * off - torch.diag_embed(2 * (1 - diagonal))
    grad_y = torch.cat([y2 @ grad_c.transpose(-1, -2), y1 @ grad_c], dim=-2) / n
    grad_z = grad_y / scale - both * (grad_y * both).sum(dim=-2, keepdim=True) / (2 * n * scale**3)
    return value, grad_z[..., :n, :], grad_z[..., n:, :]


def _training_value_and_grads(encoders: "LatticeEncoders", views: torch.Tensor, loss: str, lam: float,
                              off: torch.Tensor, with_value: bool = True
                              ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    r"""Summed loss of the members on the views ``(B, 2n)`` (first view of each input, then the second;
    ``None`` unless ``with_value``: training needs only the gradients) and its gradients in
    ``encoders.parameters()`` order (weights, then biases), by hand.

    The forward pass of :meth:`LatticeEncoders.forward` with its derivatives written out
    (:math:`\mathrm{SiLU}'(a)=s(1+a(1-s))`, :math:`s=\sigma(a)`; for :math:`z=r\,a/\|a\|`,
    :math:`g_a=r(g_z-u\,u^\top g_z)/\|a\|`, :math:`u=a/\|a\|`): no autograd graph, which on these
    small matrices costs more than the arithmetic. The tests compare it with autograd.
    """
    (w1, w2, w3), (c1, c2, c3) = list(encoders.weights), list(encoders.biases)
    with torch.no_grad():
        x = encoders.features[views]
        a1 = x @ w1 + c1
        h1 = F.silu(a1)
        a2 = h1 @ w2 + c2
        h2 = F.silu(a2)
        a3 = h2 @ w3 + c3
        norm = a3.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps
        unit = a3 / norm
        n = views.shape[-1] // 2
        z = encoders.radius * unit
        value, g1, g2 = _loss_and_embedding_gradient(z[..., :n, :], z[..., n:, :], loss, lam, off, with_value)
        grad_z = torch.cat([g1, g2], dim=-2)
        grad_a3 = encoders.radius * (grad_z - unit * (unit * grad_z).sum(dim=-1, keepdim=True)) / norm
        grad_a2 = (grad_a3 @ w3.transpose(-1, -2)) * _silu_derivative(a2)
        grad_a1 = (grad_a2 @ w2.transpose(-1, -2)) * _silu_derivative(a1)
        grads = [x.transpose(-1, -2) @ grad_a1, h1.transpose(-1, -2) @ grad_a2, h2.transpose(-1, -2) @ grad_a3,
                 grad_a1.sum(dim=-2, keepdim=True), grad_a2.sum(dim=-2, keepdim=True),
                 grad_a3.sum(dim=-2, keepdim=True)]
    return (value.sum() if with_value else None), grads


def train_lattice_encoders(
    augmentation: RotationAugmentation,
    loss: Literal["info_nce", "cross_correlation"],
    *,
    seeds: list[int],
    radius: float,
    steps: int,
    generator: torch.Generator,
    radius_start: float | None = None,
    out_dim: int = 2,
    hidden: int = 64,
    frequencies: int = 1,
    batch_size: int = 256,
    train_dtype: torch.dtype | None = None,
    lr: float = 1e-2,
    lambda_offdiag: float = 1.0,
    n_checkpoints: int = 10,
    progress: bool = False,
) -> tuple[LatticeEncoders, list[LatticeDiagnostics]]:
    r"""Train ``len(seeds)`` encoders at once (:class:`LatticeEncoders`) with Adam and cosine decay.

    At each step every encoder draws its own ``batch_size`` inputs (from ``generator``) and two
    independent views of each, and minimises :func:`one_negative_info_nce` (``loss="info_nce"``) or
    Huang et al.'s cross-correlation loss :math:`\sum_i(1-C_{ii})^2 + \lambda\sum_{i\ne j}C_{ij}^2`
    with the second-moment constraint (``loss="cross_correlation"``: :func:`second_moment_normalize`
    over both views of its batch, :math:`C = \tilde z_1^\top\tilde z_2/n`). The losses of the members
    are summed; their parameters are disjoint, so each member follows its own gradient (Adam is
    elementwise). The radius grows linearly from ``radius_start`` to ``radius`` over the first 70%
    of the steps (a temperature schedule: with :math:`\|f\| = r` the one-negative InfoNCE has
    inverse temperature :math:`r^2`), then stays. ``train_dtype`` (default: the data's) sets the
    precision of training; the diagnostics are always computed in the data's precision.

    Returns:
        The encoders and the exact diagnostics at ``n_checkpoints + 1`` evenly spaced steps (from 0).

    Raises:
        ValueError: for an unknown ``loss`` or invalid sizes.
    """
    if loss not in ("info_nce", "cross_correlation"):
        raise ValueError(f"loss must be 'info_nce' or 'cross_correlation', got {loss!r}")
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 2)
    _check_int("n_checkpoints", n_checkpoints, 1)
    lam = check_nonnegative("lambda_offdiag", lambda_offdiag)
    radius = check_positive("radius", radius)
    start = radius if radius_start is None else check_positive("radius_start", radius_start)
    data = augmentation.data
    device = data.weights.device
    dtype = train_dtype if train_dtype is not None else data.weights.dtype
    encoders = LatticeEncoders(list(seeds), data.n_points, hidden, out_dim, start, frequencies=frequencies,
                               dtype=dtype, device=device)
    lr = check_positive("lr", lr)
    # Adam (Kingma & Ba 2015, Algorithm 1; default betas and epsilon, in torch.optim.Adam's order
    # of operations) with cosine decay of the learning rate over ``steps`` (torch's
    # CosineAnnealingLR, eta_min = 0), written out: constructing torch.optim.Adam imports
    # torch._dynamo, about 1 s of a chapter's budget on a 2-core machine (2 s under cProfile).
    params = list(encoders.parameters())
    first = [torch.zeros_like(q) for q in params]
    second = [torch.zeros_like(q) for q in params]
    n_models = encoders.n_models
    off = ~torch.eye(out_dim, dtype=torch.bool, device=device)
    checkpoints = {round(i * steps / n_checkpoints) for i in range(n_checkpoints + 1)}
    history = [lattice_diagnostics(encoders, augmentation, 0)]
    iterator = progress_bar(range(1, steps + 1), desc=f"training ({loss})", disable=None if progress else True)
    law = data.marginal().expand(n_models, -1)  # what data.sample draws from, built once
    by_hand = encoders.table is None  # the MLP: gradients by hand; a free table: autograd
    off_batch = ~torch.eye(batch_size, dtype=torch.bool, device=device)
    for step in iterator:
        encoders.radius = start + (radius - start) * min(1.0, step / (0.7 * steps))
        indices = torch.multinomial(law, batch_size, replacement=True, generator=generator)
        views = torch.cat([augmentation.sample_views(indices, generator),
                           augmentation.sample_views(indices, generator)], dim=-1)
        if by_hand:
            _, grads = _training_value_and_grads(encoders, views, loss, lam,
                                                 off if loss != "info_nce" else off_batch, with_value=False)
        else:
            z = encoders(views)
            z1, z2 = z[..., :batch_size, :], z[..., batch_size:, :]
            if loss == "info_nce":
                value = one_negative_info_nce(z1, z2).sum()
            else:
                scale = torch.cat([z1, z2], dim=1).pow(2).mean(dim=1, keepdim=True).sqrt()
                c = (z1 / scale).transpose(-1, -2) @ (z2 / scale) / batch_size
                diagonal = c.diagonal(dim1=-2, dim2=-1)
                value = ((1 - diagonal).pow(2).sum() + lam * (c * off).pow(2).sum())
            grads = list(torch.autograd.grad(value, params))
        _adam_cosine_step(params, grads, first, second, step, steps, lr)
        if step in checkpoints:
            history.append(lattice_diagnostics(encoders, augmentation, step))
    check_finite("final embeddings", history[-1].embeddings)
    return encoders, history
