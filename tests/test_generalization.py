"""Tests of clkit.generalization, clkit.certificate_search and clkit.lattice_training (Huang et al. 2023)
against independent computations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import pytest
import torch

import clkit
from clkit import (
    BridgedLatticeClasses,
    LatticeEncoders,
    RotationAugmentation,
    alignment_tail_bound,
    augmentation_spread,
    augmented_distance,
    centre_norm_deficit,
    class_centres,
    cross_correlation_divergence_bound,
    cross_correlation_pair_bound,
    divergence_threshold,
    info_nce_divergence_bound,
    info_nce_pair_bound,
    lattice_diagnostics,
    nearest_centre_error,
    nearest_centre_predict,
    one_negative_info_nce,
    population_cross_correlation,
    population_info_nce,
    rho_max,
    second_moment_normalize,
    theorem1_adversarial_search,
    theorem1_bound,
    theorem1_scan,
    train_lattice_encoders,
)

DT = torch.float64

# A data set with Gaussian classes in parts (exercises the jump of RotationAugmentation) and a scalar
# evaluation of Theorem 1 at one epsilon: references for the tests, not used by the book.
from clkit.generalization import (  # noqa: E402
    SLIDES_RHO_LIMIT,
    _check_int,
    _LatticeLaws,
    _max_off_diagonal_inner,
)
from clkit._validation import check_positive, check_probability_vector, check_shape  # noqa: E402


@dataclass(frozen=True)
class AngularLatticeClasses(_LatticeLaws):
    r"""``K`` classes on a lattice of ``N`` points of the unit circle (a test data set, with classes in parts).

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
    r"""Theorem 1 for one encoder at one :math:`\varepsilon`, with scalars: a reference for theorem1_scan.

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
    r_eps = float((probabilities * (spread > epsilon)).sum())
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



@pytest.fixture(scope="module")
def data() -> AngularLatticeClasses:
    return AngularLatticeClasses(60, torch.tensor([0.3, 0.2, 0.5], dtype=DT), 2.0, 5)


def _rotate(points: torch.Tensor, steps: torch.Tensor, n: int) -> torch.Tensor:
    """Rotation matrices applied to coordinates: independent of the index arithmetic of the module."""
    angle = 2 * math.pi * steps.to(DT) / n
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * points[..., 0] - s * points[..., 1], s * points[..., 0] + c * points[..., 1]], dim=-1)


def _random_encoder(seed: int, n_points: int = 60, radius: float = 2.0, out_dim: int = 3) -> LatticeEncoders:
    return LatticeEncoders([seed], n_points, 16, out_dim, radius)


def _random_embeddings(data, seed: int, radius: float = 2.0, out_dim: int = 3) -> torch.Tensor:
    enc = _random_encoder(seed, data.n_points, radius, out_dim)
    with torch.no_grad():
        return enc(torch.arange(data.n_points))[0]


def test_class_distributions_are_disjoint_probability_laws(data):
    cond = data.class_distributions()
    assert torch.allclose(cond.sum(dim=1), torch.ones(3, dtype=DT), atol=1e-14)
    assert int((cond > 0).sum(dim=0).max()) == 1
    labels = data.labels()
    assert torch.equal(labels[cond.sum(dim=0) > 0], cond.argmax(dim=0)[cond.sum(dim=0) > 0])
    assert float(data.marginal().sum()) == pytest.approx(1.0, abs=1e-14)


def test_sampled_frequencies_match_marginal_within_four_standard_errors(data):
    idx, labels = data.sample(40_000, clkit.make_generator(1, "cpu"))
    p = data.marginal()
    freq = torch.bincount(idx, minlength=data.n_points).to(DT) / idx.numel()
    se = (p * (1 - p) / idx.numel()).sqrt()
    assert bool(((freq - p).abs() <= 4 * se + 1e-12).all())
    assert torch.equal(labels, data.labels()[idx])


def test_view_laws_match_sampled_views(data):
    aug = RotationAugmentation(data, 3)
    gen = clkit.make_generator(2, "cpu")
    idx, _ = data.sample(40_000, gen)
    v1, v2 = aug.sample_views(idx, gen), aug.sample_views(idx, gen)
    q = aug.view_marginal
    freq = torch.bincount(v1, minlength=data.n_points).to(DT) / idx.numel()
    assert bool(((freq - q).abs() <= 4 * (q * (1 - q) / idx.numel()).sqrt() + 1e-12).all())
    pair = aug.pair_distribution
    assert torch.allclose(pair, pair.T, atol=1e-15)
    assert torch.allclose(pair.sum(dim=1), q, atol=1e-14)
    joint_freq = torch.zeros_like(pair).index_put_((v1, v2), torch.ones(idx.numel(), dtype=DT), accumulate=True)
    joint_freq /= idx.numel()
    se = (pair * (1 - pair) / idx.numel()).sqrt()
    assert bool(((joint_freq - pair).abs() <= 4.5 * se + 1e-12).all())


def test_augmented_distance_matches_loop():
    gen = clkit.make_generator(3, "cpu")
    a = torch.randn(4, 5, 3, dtype=DT, generator=gen)
    b = torch.randn(4, 7, 3, dtype=DT, generator=gen)
    loop = torch.tensor([min(float((a[n, i] - b[n, j]).norm()) for i in range(5) for j in range(7)) for n in range(4)],
                        dtype=DT)
    assert torch.allclose(augmented_distance(a, b), loop, atol=1e-14)


@pytest.mark.parametrize("delta", [0.0, 0.25])
def test_main_part_sigma_matches_brute_force_over_rotated_coordinates(data, delta):
    aug = RotationAugmentation(data, 2)
    sigma, mask = aug.main_part(delta)
    n = data.n_points
    shifts = torch.arange(-2, 3)
    views = _rotate(data.points()[:, None, :].expand(n, 5, 2), shifts[None, :].expand(n, 5), n)
    d_a = augmented_distance(views[:, None].expand(n, n, 5, 2), views[None, :].expand(n, n, 5, 2))
    cond = data.class_distributions()
    best = []
    for k in range(data.n_classes):
        masses = []
        for start in range(n):
            arc = [start]
            while True:
                nxt = (arc[-1] + 1) % n
                if all(float(d_a[nxt, i]) <= delta + 1e-12 for i in arc):
                    arc.append(nxt)
                else:
                    break
            masses.append(float(cond[k, arc].sum()))
        best.append(max(masses))
        inside = mask[k].nonzero().flatten()
        assert float(d_a[inside][:, inside].max()) <= delta + 1e-12
        assert float(cond[k, inside].sum()) == pytest.approx(best[-1], abs=1e-14)
    assert sigma == pytest.approx(min(best), abs=1e-14)


def test_nearest_centre_error_matches_loop(data):
    aug = RotationAugmentation(data, 2)
    f = _random_embeddings(data, 4)
    centres = class_centres(f, aug.class_view_distributions)
    loop_centres = torch.stack([sum(aug.class_view_distributions[k, j] * f[j] for j in range(data.n_points))
                                for k in range(3)])
    assert torch.allclose(centres, loop_centres, atol=1e-13)
    pred = nearest_centre_predict(f, centres)
    joint = data.joint()
    loop = sum(float(joint[k, j]) for j in range(data.n_points) for k in range(3)
               if int(torch.argmin(torch.stack([(f[j] - centres[c]).norm() for c in range(3)]))) != k)
    assert nearest_centre_error(pred, joint) == pytest.approx(loop, abs=1e-14)


def test_one_negative_info_nce_matches_loop():
    gen = clkit.make_generator(5, "cpu")
    z1, z2 = torch.randn(6, 3, dtype=DT, generator=gen), torch.randn(6, 3, dtype=DT, generator=gen)
    terms = [-math.log(math.exp(float(z1[i] @ z2[i])) / (math.exp(float(z1[i] @ z2[i])) + math.exp(float(z1[i] @ z2[j]))))
             for i in range(6) for j in range(6) if j != i]
    assert float(one_negative_info_nce(z1, z2)) == pytest.approx(sum(terms) / len(terms), rel=1e-13)


def test_population_info_nce_matches_monte_carlo(data):
    aug = RotationAugmentation(data, 2)
    f = _random_embeddings(data, 6)
    gen = clkit.make_generator(7, "cpu")
    x, _ = data.sample(60_000, gen)
    xn, _ = data.sample(60_000, gen)
    a1, a2, a3 = aug.sample_views(x, gen), aug.sample_views(x, gen), aug.sample_views(xn, gen)
    s_pos = (f[a1] * f[a2]).sum(1)
    samples = torch.nn.functional.softplus((f[a1] * f[a3]).sum(1) - s_pos)
    pop = population_info_nce(f, aug)
    se = float(samples.std() / math.sqrt(samples.numel()))
    assert abs(float(samples.mean()) - pop.loss) <= 4 * se
    align = (f[a1] - f[a2]).pow(2).sum(1)
    assert abs(float(align.mean()) - pop.alignment) <= 4 * float(align.std() / math.sqrt(align.numel()))


def test_info_nce_regulariser_equals_logsumexp_form_by_brute_force(data):
    aug = RotationAugmentation(data, 1)
    f = _random_embeddings(data, 8, radius=1.5)
    q, pair = aug.view_marginal, aug.pair_distribution
    total = 0.0
    for y1, y2 in pair.nonzero().tolist():
        s_pos = float(f[y1] @ f[y2])
        lse = torch.logaddexp(torch.tensor(s_pos, dtype=DT), f @ f[y1])
        total += float(pair[y1, y2]) * float(q @ lse)
    assert population_info_nce(f, aug).regulariser == pytest.approx(total - 1.5**2, abs=1e-12)


def test_population_cross_correlation_matches_clkit_loss_on_exact_weights(data):
    aug = RotationAugmentation(data, 2)
    f = _random_embeddings(data, 9)
    c = population_cross_correlation(f, aug)
    assert torch.allclose(c, c.T, atol=1e-14)
    assert float(torch.linalg.eigvalsh(c).min()) >= -1e-12
    # The same matrix from clkit.cross_correlation_loss: weighted rows reproduce the expectation.
    rows, cols = aug.pair_distribution.nonzero(as_tuple=True)
    w = aug.pair_distribution[rows, cols]
    ft = second_moment_normalize(f, aug.view_marginal)
    z1, z2 = ft[rows] * (w * w.numel()).sqrt()[:, None], ft[cols] * (w * w.numel()).sqrt()[:, None]
    diag = (1 - c.diagonal()).pow(2).sum()
    off = (c - torch.diag_embed(c.diagonal())).pow(2).sum()
    loss = clkit.cross_correlation_loss(z1, z2, lambda_offdiag=0.3, standardize=False)
    assert float(loss) == pytest.approx(float(diag + 0.3 * off), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_divergence_bounds_hold_for_random_encoders(data, seed):
    aug = RotationAugmentation(data, 2)
    enc = LatticeEncoders([10 + seed], data.n_points, 16, 3, 1.0 + seed)
    diag = lattice_diagnostics(enc, aug)
    gram = diag.centres[0] @ diag.centres[0].T
    bound = info_nce_divergence_bound(float(diag.info_nce.loss[0]), diag.centres[0], data.weights, diag.radius)
    assert bool((gram <= bound + 1e-10).all())
    ngram = diag.normalized_centres[0] @ diag.normalized_centres[0].T
    cbound = cross_correlation_divergence_bound(diag.correlation[0], diag.normalized_centres[0], data.weights)
    assert bool((ngram.abs() <= cbound + 1e-10).all())
    # the batched call gives the same bounds
    batched = cross_correlation_divergence_bound(diag.correlation, diag.normalized_centres, data.weights)
    assert torch.allclose(batched[0], cbound)


@pytest.mark.parametrize("seed", range(3))
def test_alignment_tail_bound_dominates_r_epsilon(data, seed):
    aug = RotationAugmentation(data, 2)
    diag = lattice_diagnostics(_random_encoder(20 + seed), aug)
    for eps in (0.1, 0.5, 1.0):
        r_eps = float((data.marginal() * (diag.spread[0] > eps)).sum())
        assert r_eps <= alignment_tail_bound(float(diag.info_nce.alignment[0]), aug.n_views, eps) + 1e-14


def test_spread_matches_loop(data):
    aug = RotationAugmentation(data, 2)
    f = _random_embeddings(data, 30)
    spread = augmentation_spread(f[aug.view_indices])
    loop = [max(float((f[a] - f[b]).norm()) for a in aug.view_indices[j] for b in aug.view_indices[j]) for j in range(5)]
    assert torch.allclose(spread[:5], torch.tensor(loop, dtype=DT), atol=1e-14)


def test_theorem1_certified_points_are_classified_correctly():
    """An encoder that puts class k near angle 2*pi*k/K: the condition holds, and the conclusion too."""
    data = AngularLatticeClasses(60, torch.full((3,), 1 / 3, dtype=DT), 1.0, 5)
    aug = RotationAugmentation(data, 3)
    sigma, mask = aug.main_part()
    gen = clkit.make_generator(31, "cpu")
    k = data.circular_offsets().abs().argmin(dim=0)
    angle = 2 * math.pi * k.to(DT) / 3 + 0.01 * torch.randn(60, dtype=DT, generator=gen)
    f = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    centres = class_centres(f, aug.class_view_distributions)
    spread = augmentation_spread(f[aug.view_indices])
    pred = nearest_centre_predict(f, centres)
    err = nearest_centre_error(pred, data.joint())
    n_checked = 0
    for eps in sorted(set(spread.tolist())):
        check = check_theorem1(sigma, spread, data.marginal(), data.weights, centres, 2.0, eps)
        if check.condition_holds:
            n_checked += 1
            assert err <= check.bound + 1e-14
            certified = mask & (spread <= eps)[None, :]
            for c in range(3):
                assert bool((pred[certified[c]] == c).all())
    assert n_checked >= 3  # the check above ran (it never did in the first edition of this test)


def test_theorem1_scan_matches_check_theorem1_at_every_epsilon():
    data = AngularLatticeClasses(60, torch.full((3,), 1 / 3, dtype=DT), 1.0, 5)
    aug = RotationAugmentation(data, 3)
    sigma, mask = aug.main_part()
    enc = LatticeEncoders([1, 2], 60, 16, 2, 3.0)
    diag = lattice_diagnostics(enc, aug)
    scan = theorem1_scan(sigma, mask, diag.spread, data.joint(), diag.centres, diag.predictions, diag.radius)
    for b in range(2):
        for c in range(0, scan.epsilon.shape[1], 7):
            eps = float(scan.epsilon[b, c])
            check = check_theorem1(sigma, diag.spread[b], data.marginal(), data.weights, diag.centres[b], 3.0, eps)
            assert float(scan.r_epsilon[b, c]) == pytest.approx(check.r_epsilon, abs=1e-14)
            assert float(scan.rho_max[b, c]) == pytest.approx(check.rho_max, abs=1e-12)
            assert float(scan.threshold_book[b, c]) == pytest.approx(check.threshold_book, abs=1e-10)
            assert bool(scan.condition[b, c]) == check.condition_holds
            assert float(scan.bound[b, c]) == pytest.approx(check.bound, abs=1e-14)
        assert float(scan.error[b]) == pytest.approx(float(diag.error[b]), abs=1e-14)


def test_rho_max_hand_values():
    # 2(1 - 0.9) + c * 0.05 / 0.25 + 0.9 * (L * delta + 2 * 0.1) / 2
    assert rho_max(0.9, 0.05, 0.25, 2.0, 0.1) == pytest.approx(0.2 + 0.2 + 0.09, abs=1e-15)
    assert rho_max(0.9, 0.05, 0.25, 2.0, 0.1, r_coefficient=2) == pytest.approx(0.2 + 0.4 + 0.09, abs=1e-15)
    assert rho_max(0.9, 0.05, 0.25, 2.0, 0.1, lipschitz=3.0, delta=0.1) == pytest.approx(0.625, abs=1e-15)
    assert rho_max(1.0, 0.0, 0.5, 1.0, 0.0) == 0.0
    t = rho_max(torch.tensor([0.9, 1.0], dtype=DT), torch.tensor([0.05, 0.0], dtype=DT), 0.25, 2.0, 0.1)
    assert torch.allclose(t, torch.tensor([0.49, 0.1], dtype=DT), atol=1e-15)


def test_divergence_threshold_and_deficit_hand_values():
    # r^2 (1 - rho - sqrt(2 rho) - Delta/2) = 4 (1 - 0.5 - 1 - 0.1)
    assert divergence_threshold(0.5, 0.2, 2.0) == pytest.approx(-2.4, abs=1e-14)
    assert divergence_threshold(0.0, 0.0, 3.0) == pytest.approx(9.0, abs=1e-14)
    assert divergence_threshold(0.08, 0.0, 1.0) == pytest.approx(1 - 0.08 - 0.4, abs=1e-14)
    centres = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=DT)
    assert centre_norm_deficit(centres, 5.0) == pytest.approx(1 - 4 / 25, abs=1e-15)
    assert centre_norm_deficit(centres[:1], 5.0) == pytest.approx(0.0, abs=1e-15)
    assert theorem1_bound(0.9, 0.05) == pytest.approx(0.15, abs=1e-15)


def test_info_nce_divergence_bound_hand_value():
    # r = 1, orthonormal centres, p = (1/2, 1/2), loss 1: B = 1 - 2 (1/4) log 2, z = B / (2/4)
    centres = torch.eye(2, dtype=DT)
    budget = 1.0 - 0.5 * math.log(2.0)
    expected = 1.0 + math.log(math.exp(budget / 0.5) - 1.0)
    bound = info_nce_divergence_bound(1.0, centres, torch.tensor([0.5, 0.5], dtype=DT), 1.0)
    assert float(bound[0, 1]) == pytest.approx(expected, abs=1e-13)
    assert float(bound[1, 0]) == pytest.approx(expected, abs=1e-13)
    assert math.isinf(float(bound[0, 0]))
    assert info_nce_pair_bound(0.5, 0.5, 0.5, 1.0) == pytest.approx(1.0 + math.log(math.e - 1.0), abs=1e-14)
    # a budget too small for the centres: -inf
    assert float(info_nce_divergence_bound(0.1, centres, torch.tensor([0.5, 0.5], dtype=DT), 1.0)[0, 1]) == -math.inf


def test_cross_correlation_divergence_bound_hand_values():
    # d = 1, both classes collapsed at 1: L_reg = 0, sum C_ii^2 = 1, own = 1/2 -> bound sqrt(1/2 / (1/2)) = 1
    one = cross_correlation_divergence_bound(torch.ones(1, 1, dtype=DT), torch.ones(2, 1, dtype=DT),
                                             torch.tensor([0.5, 0.5], dtype=DT))
    assert float(one[0, 1]) == pytest.approx(1.0, abs=1e-15)
    # p = (0.7, 0.3), features (1, 1) and (1, -1): C = [[1, .4], [.4, 1]], L_reg = 0.32, bound exactly 0
    c = torch.tensor([[1.0, 0.4], [0.4, 1.0]], dtype=DT)
    centres = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=DT)
    two = cross_correlation_divergence_bound(c, centres, torch.tensor([0.7, 0.3], dtype=DT))
    assert float(two[0, 1]) == pytest.approx(0.0, abs=1e-7)
    assert cross_correlation_pair_bound(0.32, 2.0, 2.32, 0.7, 0.3) == pytest.approx(0.0, abs=1e-7)
    assert cross_correlation_pair_bound(0.32, 2.0, 2.0, 0.7, 0.3) == pytest.approx(math.sqrt(0.32 / 0.42), abs=1e-14)


def test_bridged_lattice_laws_are_exact_and_sigma_is_one_minus_b():
    data = BridgedLatticeClasses(3, 2, 7, Fraction(1, 10))
    rows = data.exact_class_distributions()
    assert all(sum(row) == 1 for row in rows)
    assert data.n_points == 3 * (5 + 7)
    assert rows[1][12:17] == [Fraction(9, 10) * Fraction(math.comb(4, i), 16) for i in range(5)]
    assert rows[1][17:24] == [Fraction(1, 70)] * 7
    labels = data.labels()
    assert labels.tolist() == [k for k in range(3) for _ in range(12)]
    sigma, mask = RotationAugmentation(data, 2).main_part(0.0)
    assert sigma == pytest.approx(0.9, abs=1e-14)
    assert torch.equal(mask, data.core_mask())


def test_adversarial_search_finds_violations_only_with_a_wrong_constant():
    gen = lambda: clkit.make_generator(0, "cpu")  # noqa: E731
    wrong = theorem1_adversarial_search(4000, gen(), r_coefficient=0.0, n_rounds=4, n_restarts=4)
    right = theorem1_adversarial_search(4000, gen(), r_coefficient=2.0, n_rounds=4, n_restarts=4)
    assert wrong.n_violations > 0 and wrong.n_condition >= wrong.n_violations
    assert right.n_violations == 0


def test_adversarial_search_stresses_the_epsilon_term():
    # sigma eps / r in place of 2 sigma eps / r: the search finds violations with a spread anchor
    gen = lambda: clkit.make_generator(7, "cpu")  # noqa: E731
    half = theorem1_adversarial_search(16000, gen(), r_coefficient=1.0, n_views=64, epsilon_coefficient=1.0)
    assert half.n_violations > 0 and half.max_anchor_spread > 0.01
    full = theorem1_adversarial_search(16000, gen(), r_coefficient=1.0, n_views=64)
    assert full.n_violations == 0 and full.epsilon_coefficient == 2.0


def test_batched_encoders_are_independent_members():
    pair = LatticeEncoders([3, 4], 30, 8, 2, 1.5)
    single = LatticeEncoders([4], 30, 8, 2, 1.5)
    idx = torch.arange(30)
    with torch.no_grad():
        assert torch.allclose(pair(idx)[1], single(idx)[0], atol=0)
        per_member = torch.stack([idx, (idx + 1) % 30])
        out = pair(per_member)
        assert torch.allclose(out[1], pair(idx)[1][(idx + 1) % 30], atol=0)
    assert torch.allclose(out.norm(dim=-1), torch.full((2, 30), 1.5, dtype=DT), atol=1e-12)


def test_batched_population_quantities_match_single_encoders(data):
    aug = RotationAugmentation(data, 2)
    f = torch.stack([_random_embeddings(data, s) for s in (40, 41)])
    nce = population_info_nce(f, aug)
    cc = population_cross_correlation(f, aug)
    for b in range(2):
        single = population_info_nce(f[b], aug)
        assert float(nce.loss[b]) == pytest.approx(single.loss, rel=1e-13)
        assert float(nce.alignment[b]) == pytest.approx(single.alignment, rel=1e-13)
        assert torch.allclose(cc[b], population_cross_correlation(f[b], aug), atol=1e-14)
    z1, z2 = f[:, :6], f[:, 6:12]
    assert torch.allclose(one_negative_info_nce(z1, z2),
                          torch.stack([one_negative_info_nce(z1[b], z2[b]) for b in range(2)]), atol=1e-14)


def test_training_is_deterministic(data):
    aug = RotationAugmentation(data, 2)
    runs = [train_lattice_encoders(aug, "cross_correlation", seeds=[0, 1], radius=2.0, steps=5, batch_size=16,
                                   generator=clkit.make_generator(0, "cpu"), n_checkpoints=1)[1][-1]
            for _ in range(2)]
    assert torch.equal(runs[0].embeddings, runs[1].embeddings)


def test_training_reduces_info_nce(data):
    aug = RotationAugmentation(data, 2)
    _, hist = train_lattice_encoders(aug, "info_nce", seeds=[0, 1], radius=2.0, steps=60, batch_size=64,
                                     generator=clkit.make_generator(0, "cpu"), n_checkpoints=1)
    assert bool((hist[-1].info_nce.loss < hist[0].info_nce.loss).all())


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda w: AngularLatticeClasses(61, w, 2.0, 5), "n_points"),
        (lambda w: AngularLatticeClasses(60, w, -1.0, 5), "class_std"),
        (lambda w: AngularLatticeClasses(60, w, 2.0, 10), "half_width"),
        (lambda w: AngularLatticeClasses(60, torch.tensor([0.5, 0.6, -0.1], dtype=DT), 2.0, 5), "weights"),
        (lambda w: RotationAugmentation(AngularLatticeClasses(60, w, 2.0, 5), 10), "max_shift"),
        (lambda w: RotationAugmentation(AngularLatticeClasses(60, w, 2.0, 5), 2).main_part(-0.1), "delta"),
        (lambda w: rho_max(1.5, 0.0, 0.3, 1.0, 0.1), "sigma"),
        (lambda w: rho_max(0.9, 0.0, 0.3, -1.0, 0.1), "r"),
        (lambda w: alignment_tail_bound(0.1, 3, 0.0), "epsilon"),
        (lambda w: one_negative_info_nce(torch.ones(1, 2, dtype=DT), torch.ones(1, 2, dtype=DT)), "z1"),
        (lambda w: train_lattice_encoders(RotationAugmentation(AngularLatticeClasses(60, w, 2.0, 5), 2), "mse",
                                          seeds=[0], radius=1.0, steps=1, generator=clkit.make_generator(0, "cpu")),
         "loss"),
        (lambda w: BridgedLatticeClasses(3, 1, 5, 0.1), "bridge_mass"),
        (lambda w: BridgedLatticeClasses(3, 1, 0, Fraction(1, 10)), "gap"),
        (lambda w: rho_max(0.9, 0.0, 0.3, 1.0, 0.1, r_coefficient=-1), "r_coefficient"),
        (lambda w: divergence_threshold(-0.1, 0.0, 1.0), "rho"),
        (lambda w: theorem1_adversarial_search(10, clkit.make_generator(0, "cpu"), r_coefficient=1.0),
         "n_configurations"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    w = torch.full((3,), 1 / 3, dtype=DT)
    with pytest.raises(ValueError, match=name):
        call(w)


# --------------------------------------------------------------------------------------------------
# Classes in parts, composed (jump) augmentation, arc classifiers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts_data() -> AngularLatticeClasses:
    return AngularLatticeClasses(72, torch.tensor([0.4, 0.6], dtype=DT), 1.5, 4, n_parts=3)


def test_parts_laws_have_equal_part_masses_and_interleave(parts_data):
    cond = parts_data.class_distributions()
    n = parts_data.n_points
    centres = parts_data.part_centres
    assert centres.tolist() == [[0, 24, 48], [12, 36, 60]]
    for k in range(2):
        for c in centres[k].tolist():
            window = [(c + t) % n for t in range(-4, 5)]
            assert float(cond[k, window].sum()) == pytest.approx(1 / 3, abs=1e-14)
    assert int((cond > 0).sum(dim=0).max()) == 1
    one_part = AngularLatticeClasses(72, torch.tensor([0.4, 0.6], dtype=DT), 1.5, 4)
    assert one_part.centres.tolist() == [0, 36]
    assert torch.equal(one_part.circular_offsets()[1], (torch.arange(72) - 36 + 36) % 72 - 36)


def test_jump_views_match_rotated_coordinates_and_keep_the_label(parts_data):
    aug = RotationAugmentation(parts_data, 1, jump=24)
    n = parts_data.n_points
    assert aug.n_views == 9
    shifts = torch.tensor([u * 24 + t for u in range(3) for t in (-1, 0, 1)])
    pts = parts_data.points()
    expected = _rotate(pts[:, None, :].expand(n, 9, 2), shifts[None, :].expand(n, 9), n)
    got = pts[aug.view_indices]
    # same sets of views (order of columns may differ)
    dist = torch.cdist(got, expected)
    assert float(dist.min(dim=2).values.max()) < 1e-12 and float(dist.min(dim=1).values.max()) < 1e-12
    labels = parts_data.labels()
    support = labels >= 0
    view_labels = labels[aug.view_indices[support]]
    assert bool(((view_labels == labels[support][:, None]) | (view_labels == -1)).all())
    assert torch.allclose(aug.view_matrix.sum(dim=1), torch.ones(n, dtype=DT), atol=1e-14)


def test_jump_sampled_views_match_view_law(parts_data):
    aug = RotationAugmentation(parts_data, 1, jump=24)
    gen = clkit.make_generator(5, "cpu")
    idx = torch.zeros(30_000, dtype=torch.int64)
    views = aug.sample_views(idx, gen)
    freq = torch.bincount(views, minlength=parts_data.n_points).to(DT) / idx.numel()
    q = aug.view_matrix[0]
    assert bool(((freq - q).abs() <= 4 * (q * (1 - q) / idx.numel()).sqrt() + 1e-12).all())


def test_jump_main_part_sigma_matches_linked_sets_of_rotated_coordinates(parts_data):
    aug = RotationAugmentation(parts_data, 1, jump=24)
    sigma, mask = aug.main_part(0.0)
    n = parts_data.n_points
    shifts = torch.tensor([u * 24 + t for u in range(3) for t in (-1, 0, 1)])
    views = _rotate(parts_data.points()[:, None, :].expand(n, 9, 2), shifts[None, :].expand(n, 9), n)
    d_a = augmented_distance(views[:, None].expand(n, n, 9, 2), views[None, :].expand(n, n, 9, 2))
    linked = d_a <= 1e-12
    cond = parts_data.class_distributions()

    def copies(start: int, length: int) -> torch.Tensor:
        return torch.tensor(sorted({(start + i + 24 * u) % n for i in range(length) for u in range(3)}))

    # arcs of 3 points and their copies are linked sets (by the independent d_A); arcs of 4 never are
    best = []
    for k in range(2):
        masses = []
        for start in range(n):
            three, four = copies(start, 3), copies(start, 4)
            assert bool(linked[three][:, three].all())
            assert not bool(linked[four][:, four].all())
            masses.append(float(cond[k, three].sum()))
        best.append(max(masses))
        inside = mask[k].nonzero().flatten()
        assert bool(linked[inside][:, inside].all())
        assert float(cond[k, inside].sum()) == pytest.approx(best[-1], abs=1e-14)
    assert sigma == pytest.approx(min(best), abs=1e-14)
    weak_sigma, _ = RotationAugmentation(parts_data, 1).main_part(0.0)
    assert sigma == pytest.approx(3 * weak_sigma, abs=1e-14)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: AngularLatticeClasses(70, torch.tensor([0.5, 0.5], dtype=DT), 1.0, 2, n_parts=3), "n_points"),
        (lambda: AngularLatticeClasses(72, torch.tensor([0.5, 0.5], dtype=DT), 1.0, 6, n_parts=3), "half_width"),
        (lambda: AngularLatticeClasses(72, torch.tensor([0.5, 0.5], dtype=DT), 1.0, 2, n_parts=0), "n_parts"),
        (lambda: RotationAugmentation(AngularLatticeClasses(72, torch.tensor([0.5, 0.5], dtype=DT), 1.0, 2), 1,
                                      jump=25), "jump"),
        (lambda: RotationAugmentation(AngularLatticeClasses(72, torch.tensor([0.5, 0.5], dtype=DT), 1.0, 2), 4,
                                      jump=24), "max_shift"),
    ],
)
def test_parts_and_jump_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("loss", ["info_nce", "cross_correlation"])
def test_training_loss_matches_the_definition_written_as_loops(loss):
    from clkit.lattice_training import _training_loss

    encoders = LatticeEncoders([3, 4, 5], 40, 8, 3, 2.5, frequencies=2)
    n = 7
    views = torch.randint(0, 40, (3, 2 * n), generator=torch.Generator().manual_seed(2))
    value = _training_loss(encoders, views, loss, 0.7)
    with torch.no_grad():
        z = encoders(views)
    reference = 0.0
    for b in range(3):
        z1, z2 = z[b, :n], z[b, n:]
        if loss == "info_nce":  # softplus(s_ij - s_ii) averaged over the n(n-1) pairs i != j
            reference += sum(math.log1p(math.exp(float(z1[i] @ z2[j] - z1[i] @ z2[i])))
                             for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        else:  # second-moment normalisation over both views, then Huang et al.'s loss
            both = torch.cat([z1, z2])
            scale = (both**2).mean(dim=0).sqrt()
            c = (z1 / scale).T @ (z2 / scale) / n
            reference += sum((1 - float(c[i, i])) ** 2 + 0.7 * sum(float(c[i, j]) ** 2 for j in range(3) if j != i)
                             for i in range(3))
    assert float(value.detach()) == pytest.approx(reference, rel=1e-12)


def test_adversarial_configurations_match_a_loop_over_configurations():
    from clkit.certificate_search import _adversarial_configurations

    gen = torch.Generator().manual_seed(4)
    for k in (2, 3):
        params = 2 * torch.randn(50, 7 + 3 * k, generator=gen, dtype=DT)
        condition, misclassified, rho, margin, d_a, stronger = _adversarial_configurations(params, k, 8, 1.0)
        for i in range(50):
            p = params[i]
            alpha, beta, gamma = p[0:3].softmax(0)
            w = p[3:3 + k].softmax(0)
            unit = lambda a: torch.stack([torch.cos(a), torch.sin(a)])
            chord = lambda a: 2 * abs(math.sin(float(a) / 2))
            tb, tc, tc2 = p[3 + k], p[4 + k], p[5 + k]
            ta, lam = p[5 + 3 * k], torch.sigmoid(p[6 + 3 * k])  # the anchor's second view, its share
            eps = chord(ta) + (2 - chord(ta)) * torch.sigmoid(p[4 + 3 * k])  # in [D(a), 2]
            mu = [alpha * ((1 - lam) * unit(torch.tensor(0.0, dtype=DT)) + lam * unit(ta))
                  + beta / 8 * unit(ta) + beta * 7 / 8 * unit(tb) + gamma / 2 * (unit(tc) + unit(tc2))]
            r_eps = w[0] * (beta * (chord(tb - ta) > eps) + gamma * (chord(tc - tc2) > eps))
            for ell in range(1, k):
                phi, psi = p[5 + k + ell], p[4 + 2 * k + ell]
                mu.append((unit(phi) + unit(phi + psi)) / 2)
                r_eps = r_eps + w[ell] * (chord(psi) > eps)
            rho_i = 2 * (1 - alpha - beta) + r_eps / w.min() + (alpha + beta) * 2 * eps
            deficit = 1 - min(float(m @ m) for m in mu)
            inner = max(float(mu[a] @ mu[b]) for a in range(k) for b in range(k) if a != b)
            threshold = 1 - rho_i - math.sqrt(2 * rho_i) - deficit / 2
            e0 = unit(torch.tensor(0.0, dtype=DT))
            dist = [float((e0 - m) @ (e0 - m)) for m in mu]
            assert float(rho[i]) == pytest.approx(float(rho_i), rel=1e-12)
            assert float(margin[i]) == pytest.approx(float(threshold - inner), rel=1e-9, abs=1e-12)
            assert float(misclassified[i]) == pytest.approx(dist[0] - min(dist[1:]), abs=1e-12)
            assert bool(condition[i]) == (float(threshold - inner) > 0)
            assert float(d_a[i]) == pytest.approx(chord(ta), abs=1e-14)
            rho_star = (1 - alpha - beta) + r_eps / w.min() + (alpha + beta) * eps  # the book's rho*
            star = float(rho_star) <= 0.5 and 1 - float(rho_star) - math.sqrt(2 * float(rho_star)) > inner
            assert bool(stronger[i]) == star


def test_evaluate_adversarial_configurations_on_an_explicit_instance():
    """The review's e = 1.05 instance (M = 64): condition holds at e = 1.05, not at e = 2; a misclassified."""
    from clkit import evaluate_adversarial_configurations
    th, alpha = 0.6678767566, 1e-3
    params = torch.tensor([[math.log(alpha), math.log(1 - alpha), -27.6, 0.0, 0.0, 2 * th, 0.0, 0.0,
                            -1.321299304, 0.0, -40.0, th, 0.0]], dtype=torch.float64)
    low = evaluate_adversarial_configurations(params, n_classes=2, n_views=64, epsilon_coefficient=1.05)
    slides = evaluate_adversarial_configurations(params, n_classes=2, n_views=64)
    assert bool(low.condition[0]) and float(low.misclassified_margin[0]) > 1e-3
    assert not bool(slides.condition[0])
    assert float(low.anchor_spread[0]) == pytest.approx(2 * math.sin(th / 2), abs=1e-15)
    # rho = 2 (1 - sigma) + R / min p + e sigma eps with sigma = 1 - gamma ~ 1, R = 0, eps = D(a)
    assert float(low.rho[0]) == pytest.approx(1.05 * float(low.anchor_spread[0]), rel=1e-9)
    with pytest.raises(ValueError, match="params"):
        evaluate_adversarial_configurations(params[:, :10], n_classes=2, n_views=64)
    with pytest.raises(ValueError, match="n_views"):
        evaluate_adversarial_configurations(params, n_classes=2, n_views=1)
