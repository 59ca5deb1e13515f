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
* :math:`\rho_{\max} = 2(1-\sigma) + 2R_\varepsilon/\min_\ell p_\ell + \sigma(L\delta+2\varepsilon)/r`
  (the slides print :math:`R_\varepsilon/\min_\ell p_\ell`; the factor 2 is what the book's proof
  needs, so the book's condition is the stronger one).

The synthetic data set (:class:`AngularLatticeClasses`) puts the inputs on a lattice of ``N``
points of the unit circle, and the augmentation (:class:`RotationAugmentation`) rotates by a whole
number of lattice steps in :math:`\{-m,\dots,m\}`, uniformly, optionally composed with a rotation
by a multiple of a *jump* (which links the parts of a class when classes come in several parts).
Every population quantity is then a finite sum and is computed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from ._validation import check_finite, check_nonnegative, check_positive, check_probability_vector, check_shape
from .losses import cross_correlation_loss
from .progress_bars import progress as progress_bar

__all__ = [
    "AngularLatticeClasses",
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
    "Theorem1Check",
    "check_theorem1",
    "one_negative_info_nce",
    "second_moment_normalize",
    "InfoNCEDecomposition",
    "population_info_nce",
    "population_cross_correlation",
    "cross_correlation_terms",
    "info_nce_divergence_bound",
    "cross_correlation_divergence_bound",
    "LatticeEncoder",
    "LatticeDiagnostics",
    "lattice_diagnostics",
    "train_lattice_encoder",
]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# The data set and its augmentation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AngularLatticeClasses:
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

    def points(self) -> torch.Tensor:
        """``(N, 2)`` coordinates of the lattice points."""
        angle = 2 * math.pi * torch.arange(self.n_points, dtype=self.weights.dtype, device=self.weights.device)
        return torch.stack([torch.cos(angle / self.n_points), torch.sin(angle / self.n_points)], dim=1)

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

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` inputs: ``(indices (n,), labels (n,))``."""
        _check_int("n", n, 1)
        indices = torch.multinomial(self.marginal(), n, replacement=True, generator=generator)
        return indices, self.labels()[indices]


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

    data: AngularLatticeClasses
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
        embeddings: ``(N, d)`` the embedding :math:`f(x_j)` of every lattice point.
        class_view_distributions: ``(K, N)`` laws :math:`q_k` of an augmented view of class ``k``.

    Returns:
        ``(K, d)`` centres.

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("embeddings", embeddings, (None, None))
    check_shape("class_view_distributions", class_view_distributions, (None, embeddings.shape[0]))
    return class_view_distributions @ embeddings


def nearest_centre_predict(embeddings: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    r"""Nearest-centre classifier :math:`G_f(x) = \arg\min_k \|f(x) - \mu_k\|` (ties: lowest ``k``).

    Args:
        embeddings: ``(n, d)``; centres: ``(K, d)``.

    Returns:
        ``(n,)`` predicted classes.

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("embeddings", embeddings, (None, None))
    check_shape("centres", centres, (None, embeddings.shape[1]))
    return torch.cdist(embeddings, centres).argmin(dim=1)


def nearest_centre_error(predictions: torch.Tensor, joint: torch.Tensor) -> float:
    r""":math:`\mathrm{Err}(G_f) = \sum_k\sum_j \mathbb P[x = x_j, y = k]\,\mathbb 1[G_f(x_j)\ne k]`, exactly.

    Args:
        predictions: ``(N,)`` :math:`G_f(x_j)` for every lattice point.
        joint: ``(K, N)`` joint law of (label, input).

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("joint", joint, (None, None))
    check_shape("predictions", predictions, (joint.shape[1],))
    classes = torch.arange(joint.shape[0], device=joint.device)
    return float((joint * (predictions[None, :] != classes[:, None])).sum())


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
        view_embeddings: ``(n, M, d)`` embeddings of the :math:`M` views of ``n`` inputs.

    Returns:
        ``(n,)`` spreads.

    Raises:
        ValueError: unless ``view_embeddings`` is 3-D.
    """
    check_shape("view_embeddings", view_embeddings, (None, None, None))
    return torch.cdist(view_embeddings, view_embeddings).flatten(1).max(dim=1).values


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


def centre_norm_deficit(centres: torch.Tensor, r: float) -> float:
    r""":math:`\Delta_\mu = 1 - \min_k \|\mu_k\|^2 / r^2` (Theorem 1).

    Raises:
        ValueError: for a non-matrix ``centres`` or ``r <= 0``.
    """
    check_shape("centres", centres, (None, None))
    r = check_positive("r", r)
    return 1.0 - float(centres.pow(2).sum(dim=1).min()) / r**2


def rho_max(sigma: float, r_epsilon: float, min_weight: float, r: float, epsilon: float,
            lipschitz: float = 0.0, delta: float = 0.0) -> float:
    r""":math:`\rho_{\max}` of Theorem 1, with the constants of the book's proof.

    .. math::
        \rho_{\max} = 2(1-\sigma) + \frac{2R_\varepsilon}{\min_\ell p_\ell}
                      + \sigma\Big(\frac{L\delta}{r} + \frac{2\varepsilon}{r}\Big).

    Huang et al.'s slides print :math:`R_\varepsilon/\min_\ell p_\ell` (factor 1); the book's proof
    of Theorem 1 loses the factor 2, so its :math:`\rho_{\max}` is larger and its condition stronger.

    Raises:
        ValueError: if ``sigma`` is not in (0, 1], a probability is out of range or a scale is negative.
    """
    sigma = check_positive("sigma", sigma)
    if sigma > 1:
        raise ValueError(f"sigma must be in (0, 1], got {sigma}")
    r_epsilon = check_nonnegative("r_epsilon", r_epsilon)
    if r_epsilon > 1:
        raise ValueError(f"r_epsilon must be a probability, got {r_epsilon}")
    min_weight = check_positive("min_weight", min_weight)
    r = check_positive("r", r)
    epsilon = check_nonnegative("epsilon", epsilon)
    lipschitz = check_nonnegative("lipschitz", lipschitz)
    delta = check_nonnegative("delta", delta)
    return 2 * (1 - sigma) + 2 * r_epsilon / min_weight + sigma * (lipschitz * delta + 2 * epsilon) / r


def divergence_threshold(rho: float, delta_mu: float, r: float) -> float:
    r"""Right-hand side of Theorem 1's condition, :math:`r^2(1-\rho_{\max}-\sqrt{2\rho_{\max}}-\Delta_\mu/2)`.

    Raises:
        ValueError: if ``rho < 0`` or ``r <= 0``.
    """
    rho = check_nonnegative("rho", rho)
    r = check_positive("r", r)
    return r**2 * (1 - rho - math.sqrt(2 * rho) - delta_mu / 2)


@dataclass(frozen=True)
class Theorem1Check:
    """Theorem 1 evaluated for one encoder and one :math:`\\varepsilon` (all fields are floats/bools)."""

    epsilon: float
    r_epsilon: float
    rho_max: float
    delta_mu: float
    threshold: float
    max_inner_product: float
    condition_holds: bool
    bound: float

    @property
    def margin(self) -> float:
        """``threshold - max_{k != l} mu_k^T mu_l`` (positive when the condition holds)."""
        return self.threshold - self.max_inner_product


def check_theorem1(sigma: float, spread: torch.Tensor, probabilities: torch.Tensor, class_weights: torch.Tensor,
                   centres: torch.Tensor, r: float, epsilon: float, lipschitz: float = 0.0,
                   delta: float = 0.0) -> Theorem1Check:
    r"""Evaluate Theorem 1 (book's reconstruction) at one :math:`\varepsilon`.

    Condition: :math:`\max_{k\ne\ell}\mu_k^\top\mu_\ell < r^2(1-\rho_{\max}-\sqrt{2\rho_{\max}}-\Delta_\mu/2)`;
    conclusion: :math:`\mathrm{Err}(G_f) \le (1-\sigma) + R_\varepsilon` (``bound``).

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
    rho = rho_max(sigma, r_eps, float(class_weights.min()), r, epsilon, lipschitz, delta)
    delta_mu = centre_norm_deficit(centres, r)
    threshold = divergence_threshold(rho, delta_mu, r)
    gram = centres @ centres.T
    off_diagonal = gram.masked_fill(torch.eye(gram.shape[0], dtype=torch.bool, device=gram.device), -math.inf)
    max_inner = float(off_diagonal.max())
    return Theorem1Check(epsilon=float(epsilon), r_epsilon=r_eps, rho_max=rho, delta_mu=delta_mu,
                         threshold=threshold, max_inner_product=max_inner,
                         condition_holds=bool(max_inner < threshold), bound=(1 - sigma) + r_eps)


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
        z1, z2: ``(N, d)`` embeddings of two views of ``N >= 2`` inputs.

    Raises:
        ValueError: for shapes that differ or fewer than two rows.
    """
    check_shape("z1", z1, (None, None))
    check_shape("z2", z2, tuple(z1.shape))
    if z1.shape[0] < 2:
        raise ValueError(f"z1 must have at least 2 rows, got {z1.shape[0]}")
    scores = z1 @ z2.T
    logits = scores - scores.diagonal()[:, None]
    mask = ~torch.eye(z1.shape[0], dtype=torch.bool, device=z1.device)
    return F.softplus(logits[mask]).mean()


def second_moment_normalize(embeddings: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Huang et al.'s normalisation constraint :math:`\mathbb E_x\mathbb E_{x'\in A(x)} f_i(x')^2 = 1`.

    Returns :math:`\tilde f_i = f_i / \sqrt{\sum_n w_n f_i(x_n)^2}` (no centring), with uniform
    weights by default (a batch) or the law ``weights`` of the views (the population).

    Raises:
        ValueError: on shape mismatch or a feature that is identically zero.
    """
    check_shape("embeddings", embeddings, (None, None))
    if weights is None:
        second_moment = embeddings.pow(2).mean(dim=0)
    else:
        check_shape("weights", weights, (embeddings.shape[0],))
        second_moment = weights @ embeddings.pow(2)
    if (second_moment == 0).any():
        raise ValueError("embeddings has a feature that is identically zero; it cannot be normalised")
    return embeddings / second_moment.sqrt()


class InfoNCEDecomposition(NamedTuple):
    r""":math:`\mathcal L_{\mathrm{InfoNCE}} = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}}` (population)."""

    loss: float
    alignment: float
    regulariser: float


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
        embeddings: ``(N, d)`` :math:`f(x_j)` for all lattice points.
        augmentation: the augmentation (gives :math:`Q` and :math:`q`).

    Raises:
        ValueError: if ``embeddings`` does not have one row per lattice point.
    """
    check_shape("embeddings", embeddings, (augmentation.data.n_points, None))
    pair = augmentation.pair_distribution
    rows, cols = pair.nonzero(as_tuple=True)
    weight = pair[rows, cols]
    negatives = augmentation.view_marginal.nonzero(as_tuple=True)[0]
    neg_weight = augmentation.view_marginal[negatives]
    s_pos = (embeddings[rows] * embeddings[cols]).sum(dim=1)
    s_neg = embeddings[rows] @ embeddings[negatives].T
    loss = float(weight @ (F.softplus(s_neg - s_pos[:, None]) @ neg_weight))
    alignment = float(weight @ (embeddings[rows] - embeddings[cols]).pow(2).sum(dim=1))
    return InfoNCEDecomposition(loss=loss, alignment=alignment, regulariser=loss - alignment / 2)


def population_cross_correlation(embeddings: torch.Tensor, augmentation: RotationAugmentation) -> torch.Tensor:
    r"""Huang et al.'s cross-correlation matrix, exactly: :math:`C = \tilde f^\top Q\,\tilde f` (``(d, d)``).

    :math:`C_{ij} = \mathbb E_x\mathbb E_{x_1,x_2\in A(x)}[\tilde f_i(x_1)\tilde f_j(x_2)]` with
    :math:`\tilde f` the second-moment normalisation of :func:`second_moment_normalize` under the
    view law :math:`q`. Since :math:`Q = B^\top\mathrm{diag}(p_X)B`, :math:`C` is symmetric PSD.

    Raises:
        ValueError: if ``embeddings`` does not have one row per lattice point.
    """
    check_shape("embeddings", embeddings, (augmentation.data.n_points, None))
    normalized = second_moment_normalize(embeddings, augmentation.view_marginal)
    return normalized.T @ augmentation.pair_distribution @ normalized


def cross_correlation_terms(correlation: torch.Tensor) -> tuple[float, float]:
    r"""Split of the cross-correlation loss: :math:`(\sum_i(1-C_{ii})^2,\ \sum_i\sum_{j\ne i}C_{ij}^2)`.

    The first term vanishes iff every feature is perfectly aligned
    (:math:`C_{ii} = 1 - \tfrac12\mathbb E(\tilde f_i(x_1)-\tilde f_i(x_2))^2` under the constraint);
    the second is the regulariser :math:`\mathcal L_{\mathrm{reg}}` (without the weight :math:`\lambda`).

    Raises:
        ValueError: unless ``correlation`` is a square matrix.
    """
    check_shape("correlation", correlation, (None, correlation.shape[0] if correlation.dim() == 2 else None))
    diagonal = correlation.diagonal()
    off = correlation - torch.diag_embed(diagonal)
    return float((1 - diagonal).pow(2).sum()), float(off.pow(2).sum())


def _log_expm1(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z > 30, z + torch.log1p(-torch.exp(-z)), torch.log(torch.expm1(z.clamp_max(30))))


def info_nce_divergence_bound(loss: float, centres: torch.Tensor, class_weights: torch.Tensor,
                              r: float) -> torch.Tensor:
    r"""Book's lemma: class-centre inner products bounded by the InfoNCE regulariser (plus alignment).

    With :math:`\varphi(t) = \log(1+e^{t-r^2})` (convex, increasing) and :math:`s^+\le r^2`,
    :math:`\mathcal L = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}}
    \ge \mathbb E\varphi(s^-) \ge \sum_{k,\ell}p_kp_\ell\,\varphi(\mu_k^\top\mu_\ell)` (Jensen given
    the two classes, :math:`\mathbb E[s^-\mid k,\ell] = \mu_k^\top\mu_\ell`). Keeping the pair
    :math:`\{k,\ell\}` and the diagonal,

    .. math::
        \mu_k^\top\mu_\ell \le r^2 + \log\Big(\exp\frac{B}{2p_kp_\ell} - 1\Big),\qquad
        B = \tfrac12\mathcal L_{\mathrm{align}} + \mathcal L_{\mathrm{reg}} - \sum_k p_k^2\,\varphi(\|\mu_k\|^2).

    Args:
        loss: the population loss :math:`\tfrac12\mathcal L_{\mathrm{align}}+\mathcal L_{\mathrm{reg}}`.
        centres: ``(K, d)``; class_weights: ``(K,)``; r: the norm of :math:`f`.

    Returns:
        ``(K, K)`` bounds; the diagonal is ``+inf`` (no claim). ``-inf`` where :math:`B \le 0`
        (the lemma then says the loss is inconsistent with the centres).

    Raises:
        ValueError: on shape mismatch or ``r <= 0``.
    """
    check_shape("centres", centres, (class_weights.shape[0], None))
    r = check_positive("r", r)
    phi = F.softplus(centres.pow(2).sum(dim=1) - r**2)
    budget = loss - float((class_weights.pow(2) * phi).sum())
    pair_weight = 2 * class_weights[:, None] * class_weights[None, :]
    z = torch.as_tensor(budget, dtype=centres.dtype, device=centres.device) / pair_weight
    bound = torch.where(z > 0, r**2 + _log_expm1(z.clamp_min(1e-300)), torch.full_like(z, -math.inf))
    return bound.fill_diagonal_(math.inf)


def cross_correlation_divergence_bound(correlation: torch.Tensor, normalized_centres: torch.Tensor,
                                       class_weights: torch.Tensor) -> torch.Tensor:
    r"""Book's lemma: :math:`|\tilde\mu_k^\top\tilde\mu_\ell|` bounded by :math:`\sqrt{\mathcal L_{\mathrm{reg}}+\dots}`.

    With :math:`g(x) = \mathbb E_{x'\in A(x)}\tilde f(x')`, :math:`C = \mathbb E_x g g^\top \succeq
    M = \sum_k p_k\tilde\mu_k\tilde\mu_k^\top \succeq 0` (the within-class covariances are PSD), and
    :math:`0\preceq M\preceq C \Rightarrow \|M\|_F^2\le\|C\|_F^2`. Expanding both norms,

    .. math::
        |\tilde\mu_k^\top\tilde\mu_\ell| \le \sqrt{\frac{\mathcal L_{\mathrm{reg}} + \sum_i C_{ii}^2
              - \sum_m p_m^2\|\tilde\mu_m\|^4}{2p_kp_\ell}},\qquad
        \mathcal L_{\mathrm{reg}} = \sum_i\sum_{j\ne i}C_{ij}^2,

    where the extra terms cancel when the classes collapse onto :math:`K = d` orthogonal points.

    Args:
        correlation: ``(d, d)`` :math:`C` of :func:`population_cross_correlation`.
        normalized_centres: ``(K, d)`` centres :math:`\tilde\mu_k` of the normalised :math:`\tilde f`.
        class_weights: ``(K,)``.

    Returns:
        ``(K, K)`` bounds, diagonal ``+inf``.

    Raises:
        ValueError: on shape mismatch.
    """
    check_shape("correlation", correlation, (None, None))
    check_shape("normalized_centres", normalized_centres, (class_weights.shape[0], correlation.shape[0]))
    diagonal_sq = float(correlation.diagonal().pow(2).sum())
    _, regulariser = cross_correlation_terms(correlation)
    own = float((class_weights.pow(2) * normalized_centres.pow(2).sum(dim=1).pow(2)).sum())
    pair_weight = 2 * class_weights[:, None] * class_weights[None, :]
    bound = ((regulariser + diagonal_sq - own) / pair_weight).clamp_min(0).sqrt()
    return bound.fill_diagonal_(math.inf)


# --------------------------------------------------------------------------------------------------
# Training on the lattice, with exact diagnostics
# --------------------------------------------------------------------------------------------------


class LatticeEncoder(torch.nn.Module):
    r"""Two-hidden-layer MLP on the circle, normalised to radius :math:`r`: :math:`f(x) = r\,h(x)/\|h(x)\|`.

    Weights are drawn with ``generator`` (uniform :math:`\pm 1/\sqrt{\text{fan-in}}`, as PyTorch's
    default). ``radius`` may be changed during training (a schedule of the inverse temperature).

    Raises:
        ValueError: for non-positive sizes or radius.
    """

    def __init__(self, hidden: int, out_dim: int, radius: float, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> None:
        super().__init__()
        _check_int("hidden", hidden, 1)
        _check_int("out_dim", out_dim, 1)
        self.radius = check_positive("radius", radius)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, out_dim),
        ).to(dtype=dtype, device=device)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, torch.nn.Linear):
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 2)`` points to ``(n, out_dim)`` embeddings of norm ``radius``."""
        return self.radius * F.normalize(self.net(x), dim=1)


@dataclass(frozen=True)
class LatticeDiagnostics:
    """Exact population quantities of one encoder on the lattice (see :func:`lattice_diagnostics`)."""

    step: int
    radius: float
    embeddings: torch.Tensor
    centres: torch.Tensor
    normalized_centres: torch.Tensor
    spread: torch.Tensor
    error: float
    info_nce: InfoNCEDecomposition
    correlation: torch.Tensor

    @property
    def max_inner_product(self) -> float:
        """:math:`\\max_{k\\ne\\ell}\\mu_k^\\top\\mu_\\ell`, the divergence of the class centres."""
        gram = self.centres @ self.centres.T
        return float(gram.masked_fill(torch.eye(gram.shape[0], dtype=torch.bool, device=gram.device), -math.inf).max())


def lattice_diagnostics(encoder: LatticeEncoder, augmentation: RotationAugmentation, step: int = 0) -> LatticeDiagnostics:
    r"""Embed every lattice point and compute, exactly: :math:`\mu_k`, :math:`\tilde\mu_k`, :math:`D(x)`,
    :math:`\mathrm{Err}(G_f)`, the InfoNCE split and the cross-correlation matrix :math:`C`."""
    data = augmentation.data
    with torch.no_grad():
        f = encoder(data.points())
    centres = class_centres(f, augmentation.class_view_distributions)
    normalized = class_centres(second_moment_normalize(f, augmentation.view_marginal),
                               augmentation.class_view_distributions)
    spread = augmentation_spread(f[augmentation.view_indices])
    error = nearest_centre_error(nearest_centre_predict(f, centres), data.joint())
    return LatticeDiagnostics(step=step, radius=encoder.radius, embeddings=f, centres=centres,
                              normalized_centres=normalized, spread=spread, error=error,
                              info_nce=population_info_nce(f, augmentation),
                              correlation=population_cross_correlation(f, augmentation))


def train_lattice_encoder(
    augmentation: RotationAugmentation,
    loss: Literal["info_nce", "cross_correlation"],
    *,
    radius: float,
    steps: int,
    generator: torch.Generator,
    radius_start: float | None = None,
    out_dim: int = 2,
    hidden: int = 64,
    batch_size: int = 256,
    lr: float = 1e-2,
    lambda_offdiag: float = 1.0,
    n_checkpoints: int = 10,
    progress: bool = False,
) -> tuple[LatticeEncoder, list[LatticeDiagnostics]]:
    r"""Train a :class:`LatticeEncoder` with Adam (cosine learning-rate decay) on mini-batches.

    Each step draws ``batch_size`` inputs and two independent views of each, and minimises
    :func:`one_negative_info_nce` (``loss="info_nce"``) or Huang et al.'s cross-correlation loss
    :math:`\sum_i(1-C_{ii})^2 + \lambda\sum_{i\ne j}C_{ij}^2` with the second-moment constraint
    (``loss="cross_correlation"``: :func:`second_moment_normalize` over both views of the batch,
    then ``clkit.cross_correlation_loss(..., standardize=False)``). The radius grows linearly from
    ``radius_start`` to ``radius`` over the first 70% of the steps (a temperature schedule: with
    :math:`\|f\| = r` the one-negative InfoNCE has inverse temperature :math:`r^2`), then stays.

    Returns:
        The encoder and the exact diagnostics at ``n_checkpoints + 1`` evenly spaced steps (from 0).

    Raises:
        ValueError: for an unknown ``loss`` or invalid sizes.
    """
    if loss not in ("info_nce", "cross_correlation"):
        raise ValueError(f"loss must be 'info_nce' or 'cross_correlation', got {loss!r}")
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 2)
    _check_int("n_checkpoints", n_checkpoints, 1)
    radius = check_positive("radius", radius)
    start = radius if radius_start is None else check_positive("radius_start", radius_start)
    data = augmentation.data
    dtype, device = data.weights.dtype, data.weights.device
    encoder = LatticeEncoder(hidden, out_dim, start, generator, dtype=dtype, device=device)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=check_positive("lr", lr))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    points = data.points()
    checkpoints = {round(i * steps / n_checkpoints) for i in range(n_checkpoints + 1)}
    history = [lattice_diagnostics(encoder, augmentation, 0)]
    iterator = progress_bar(range(1, steps + 1), desc=f"training ({loss})", disable=None if progress else True)
    for step in iterator:
        encoder.radius = start + (radius - start) * min(1.0, step / (0.7 * steps))
        indices, _ = data.sample(batch_size, generator)
        z1 = encoder(points[augmentation.sample_views(indices, generator)])
        z2 = encoder(points[augmentation.sample_views(indices, generator)])
        if loss == "info_nce":
            value = one_negative_info_nce(z1, z2)
        else:
            scale = torch.cat([z1, z2]).pow(2).mean(dim=0).sqrt()
            value = cross_correlation_loss(z1 / scale, z2 / scale, lambda_offdiag=lambda_offdiag, standardize=False)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        schedule.step()
        if step in checkpoints:
            history.append(lattice_diagnostics(encoder, augmentation, step))
    check_finite("final embeddings", history[-1].embeddings)
    return encoder, history
