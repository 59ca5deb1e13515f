"""Tests of clkit.generalization (Huang et al. 2023) against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

import clkit
from clkit.generalization import (
    AngularLatticeClasses,
    RotationAugmentation,
    alignment_failure_probability,
    alignment_tail_bound,
    augmentation_spread,
    augmented_distance,
    check_theorem1,
    class_centres,
    cross_correlation_divergence_bound,
    info_nce_divergence_bound,
    lattice_diagnostics,
    nearest_centre_error,
    nearest_centre_predict,
    one_negative_info_nce,
    population_cross_correlation,
    population_info_nce,
    rho_max,
    second_moment_normalize,
    train_lattice_encoder,
    LatticeEncoder,
)

DT = torch.float64


@pytest.fixture(scope="module")
def data() -> AngularLatticeClasses:
    return AngularLatticeClasses(60, torch.tensor([0.3, 0.2, 0.5], dtype=DT), 2.0, 5)


def _rotate(points: torch.Tensor, steps: torch.Tensor, n: int) -> torch.Tensor:
    """Rotation matrices applied to coordinates: independent of the index arithmetic of the module."""
    angle = 2 * math.pi * steps.to(DT) / n
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * points[..., 0] - s * points[..., 1], s * points[..., 0] + c * points[..., 1]], dim=-1)


def _random_encoder(seed: int, radius: float = 2.0, out_dim: int = 3) -> LatticeEncoder:
    return LatticeEncoder(16, out_dim, radius, clkit.make_generator(seed, "cpu"))


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
    f = _random_encoder(4)(data.points()).detach()
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
    enc = _random_encoder(6)
    f = enc(data.points()).detach()
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
    f = _random_encoder(8, radius=1.5)(data.points()).detach()
    q, pair = aug.view_marginal, aug.pair_distribution
    total = 0.0
    for y1, y2 in pair.nonzero().tolist():
        s_pos = float(f[y1] @ f[y2])
        lse = torch.logaddexp(torch.tensor(s_pos, dtype=DT), f @ f[y1])
        total += float(pair[y1, y2]) * float(q @ lse)
    assert population_info_nce(f, aug).regulariser == pytest.approx(total - 1.5**2, abs=1e-12)


def test_population_cross_correlation_matches_clkit_loss_on_exact_weights(data):
    aug = RotationAugmentation(data, 2)
    f = _random_encoder(9)(data.points()).detach()
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
    enc = _random_encoder(10 + seed, radius=1.0 + seed)
    diag = lattice_diagnostics(enc, aug)
    gram = diag.centres @ diag.centres.T
    bound = info_nce_divergence_bound(diag.info_nce.loss, diag.centres, data.weights, diag.radius)
    assert bool((gram <= bound + 1e-10).all())
    ngram = diag.normalized_centres @ diag.normalized_centres.T
    cbound = cross_correlation_divergence_bound(diag.correlation, diag.normalized_centres, data.weights)
    assert bool((ngram.abs() <= cbound + 1e-10).all())


@pytest.mark.parametrize("seed", range(3))
def test_alignment_tail_bound_dominates_r_epsilon(data, seed):
    aug = RotationAugmentation(data, 2)
    diag = lattice_diagnostics(_random_encoder(20 + seed), aug)
    for eps in (0.1, 0.5, 1.0):
        r_eps = alignment_failure_probability(diag.spread, data.marginal(), eps)
        assert r_eps <= alignment_tail_bound(diag.info_nce.alignment, aug.n_views, eps) + 1e-14


def test_spread_matches_loop(data):
    aug = RotationAugmentation(data, 2)
    f = _random_encoder(30)(data.points()).detach()
    spread = augmentation_spread(f[aug.view_indices])
    loop = [max(float((f[a] - f[b]).norm()) for a in aug.view_indices[j] for b in aug.view_indices[j]) for j in range(5)]
    assert torch.allclose(spread[:5], torch.tensor(loop, dtype=DT), atol=1e-14)


def test_theorem1_certified_points_are_classified_correctly():
    """An encoder that puts class k near angle 2*pi*k/K: the condition holds and the conclusion too."""
    data = AngularLatticeClasses(60, torch.full((3,), 1 / 3, dtype=DT), 2.0, 5)
    aug = RotationAugmentation(data, 3)
    sigma, mask = aug.main_part()
    gen = clkit.make_generator(31, "cpu")
    k = data.circular_offsets().abs().argmin(dim=0)
    angle = 2 * math.pi * k.to(DT) / 3 + 0.05 * torch.randn(60, dtype=DT, generator=gen)
    f = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    centres = class_centres(f, aug.class_view_distributions)
    spread = augmentation_spread(f[aug.view_indices])
    for eps in sorted(set(spread.tolist()))[::5]:
        check = check_theorem1(sigma, spread, data.marginal(), data.weights, centres, 2.0, eps)
        if check.condition_holds:
            err = nearest_centre_error(nearest_centre_predict(f, centres), data.joint())
            assert err <= check.bound + 1e-14
            certified = mask & (spread <= eps)[None, :]
            pred = nearest_centre_predict(f, centres)
            for c in range(3):
                assert bool((pred[certified[c]] == c).all())


def test_training_is_deterministic(data):
    aug = RotationAugmentation(data, 2)
    runs = [train_lattice_encoder(aug, "cross_correlation", radius=2.0, steps=5, batch_size=16,
                                  generator=clkit.make_generator(0, "cpu"), n_checkpoints=1)[1][-1] for _ in range(2)]
    assert torch.equal(runs[0].embeddings, runs[1].embeddings)


def test_training_reduces_info_nce(data):
    aug = RotationAugmentation(data, 2)
    _, hist = train_lattice_encoder(aug, "info_nce", radius=2.0, steps=60, batch_size=64,
                                    generator=clkit.make_generator(0, "cpu"), n_checkpoints=1)
    assert hist[-1].info_nce.loss < hist[0].info_nce.loss


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
        (lambda w: train_lattice_encoder(RotationAugmentation(AngularLatticeClasses(60, w, 2.0, 5), 2), "mse",
                                         radius=1.0, steps=1, generator=clkit.make_generator(0, "cpu")), "loss"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    w = torch.full((3,), 1 / 3, dtype=DT)
    with pytest.raises(ValueError, match=name):
        call(w)
