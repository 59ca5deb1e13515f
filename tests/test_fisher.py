"""clkit.fisher against independent computations: Monte Carlo, scipy, scikit-learn, autograd, loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import clkit

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: thread start-up dominates on a busy machine. Restored after each test.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _mixture(k: int = 3, d: int = 5, seed: int = 0, centred: bool = False) -> clkit.GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, k + 1, dtype=F64)
    weights = weights / weights.sum()
    means = torch.randn(k, d, generator=g, dtype=F64)
    if centred:
        means = means - weights @ means
    x = torch.randn(d, d, generator=g, dtype=F64)
    return clkit.GaussianMixture(weights, means, x @ x.T / d + 0.3 * torch.eye(d, dtype=F64))


def _gen(seed: int) -> torch.Generator:
    return clkit.make_generator(seed, "cpu")


def test_fisher_subspace_matches_scipy_generalised_eigenvectors():
    mix = _mixture(k=3, d=6, centred=True)
    sigma = mix.covariances[0]
    between = torch.einsum("k,ki,kj->ij", mix.weights, mix.means, mix.means)
    _, vecs = scipy.linalg.eigh(between.numpy(), sigma.numpy())
    top = torch.as_tensor(vecs[:, -2:])  # centred: rank K - 1 = 2
    basis = clkit.fisher_subspace(mix.weights, mix.means, sigma)
    assert basis.shape == (6, 2)
    assert float(clkit.principal_angles(top, basis).max()) < 1e-10


def test_fisher_subspace_centred_matches_sklearn_lda_on_large_sample():
    mix = _mixture(k=3, d=4, seed=1)
    x, y = mix.sample(200_000, _gen(0))
    lda = LinearDiscriminantAnalysis(solver="eigen").fit(x.numpy(), y.numpy())
    basis = clkit.fisher_subspace(mix.weights, mix.means, mix.covariances[0], centered=True)
    angle = float(clkit.principal_angles(torch.as_tensor(lda.scalings_[:, :2]), basis).max())
    assert angle < 0.02  # sampling error O(1/sqrt(n)) ~ 2e-3


def test_fisher_subspace_accepts_per_component_covariances_via_their_average():
    mix = _mixture(k=2, d=4, seed=2)
    covs = torch.stack([mix.covariances[0] * 0.5, mix.covariances[0] * 1.5])
    weights = torch.tensor([0.5, 0.5], dtype=F64)
    a = clkit.fisher_subspace(weights, mix.means, covs)
    b = clkit.fisher_subspace(weights, mix.means, mix.covariances[0])
    assert float(clkit.principal_angles(a, b).max()) < 1e-12


def test_spectral_subspace_is_top_eigenvectors_of_second_moment():
    mix = _mixture(k=2, d=5, seed=3)
    x, _ = mix.sample(400_000, _gen(1))
    sample_moment = (x.T @ x / x.shape[0]).numpy()
    vecs = np.linalg.eigh(sample_moment)[1][:, -2:]
    assert float(clkit.principal_angles(torch.as_tensor(vecs), clkit.spectral_subspace(mix, 2)).max()) < 0.05


def test_augmentation_pairs_share_component_with_probability_delta_plus_chance():
    mix = _mixture(k=3, d=2, seed=4)
    delta, n = 0.6, 200_000
    _, _, labels, labels_hat = clkit.sample_augmentation_pairs(mix, n, delta, _gen(2))
    same = (labels == labels_hat).to(F64)
    theory = delta + (1 - delta) * float(mix.weights.pow(2).sum())
    assert abs(float(same.mean()) - theory) <= 4 * math.sqrt(theory * (1 - theory) / n)


def test_augmentation_pairs_are_deterministic_given_the_seed():
    mix = _mixture()
    first = clkit.sample_augmentation_pairs(mix, 50, 0.5, _gen(3))
    second = clkit.sample_augmentation_pairs(mix, 50, 0.5, _gen(3))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_gauss_hermite_grid_integrates_gaussian_moments_exactly():
    nodes, weights = clkit.gauss_hermite_grid(2, 6)
    assert abs(float(weights.sum()) - 1) < 1e-14
    assert abs(float(weights @ nodes[:, 0].pow(4)) - 3) < 1e-12  # E eta^4 = 3
    assert abs(float(weights @ (nodes[:, 0].pow(2) * nodes[:, 1].pow(2))) - 1) < 1e-12


@pytest.mark.parametrize("delta", [1.0, 0.4])
def test_population_loss_matches_monte_carlo_over_pairs(delta):
    mix = _mixture(k=3, d=4, seed=5)
    a = 0.3 * torch.randn(4, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    x, x_hat, _, _ = clkit.sample_augmentation_pairs(mix, 200_000, delta, _gen(4))
    estimate = clkit.monte_carlo_mean(clkit.pair_info_nce_integrand(a, mix, x, x_hat))
    theory = float(clkit.population_pair_info_nce(a, mix, delta, 32))
    assert abs(estimate.mean - theory) <= 4 * estimate.stderr


def test_population_loss_with_inner_expectation_by_monte_carlo():
    # Fully sampled: pairs and the y of the denominator (the closed-form MGF is not used). Each of
    # 40 independent replicates has its own pairs and y's, so the replicate means are i.i.d.
    mix = _mixture(k=2, d=3, seed=7)
    a = 0.3 * torch.randn(3, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    gen = _gen(5)
    replicates = []
    for _ in range(40):
        x, x_hat, _, _ = clkit.sample_augmentation_pairs(mix, 200, 1.0, gen)
        y, _ = mix.sample(5_000, gen)
        log_denominator = torch.logsumexp((x @ a) @ (y @ a).T, dim=1) - math.log(y.shape[0])
        replicates.append(float((-((x @ a) * (x_hat @ a)).sum(1) + log_denominator).mean()))
    estimate = clkit.monte_carlo_mean(torch.tensor(replicates, dtype=F64))
    theory = float(clkit.population_pair_info_nce(a, mix, 1.0, 32))
    # + 1e-4 bounds the downward bias of log(mean of 5000 exponentials), about Var/(2 n_y) ~ 1e-5.
    assert abs(estimate.mean - theory) <= 4 * estimate.stderr + 1e-4


def test_expected_log_mgf_quadrature_converges_and_matches_brute_force_r_dimensional_rule():
    mix = _mixture(k=3, d=4, seed=9)
    a = 0.4 * torch.randn(4, 2, generator=torch.Generator().manual_seed(10), dtype=F64)
    reduced = float(clkit.population_pair_info_nce(a, mix, 1.0, 40))
    # Brute force: Gauss-Hermite over all r = 2 coordinates of z, no reduction to K - 1 dims.
    nu, c = mix.means @ a, a.T @ mix.covariances[0] @ a
    nodes, weights = clkit.gauss_hermite_grid(2, 60)
    chol = torch.linalg.cholesky(c)
    total = 0.0
    for j in range(3):
        z = nu[j] + nodes @ chol.T
        values = 0.5 * ((z @ c) * z).sum(1) + torch.logsumexp(torch.log(mix.weights) + z @ nu.T, dim=1)
        total += float(mix.weights[j] * (weights @ values))
    positive = float(mix.weights @ nu.pow(2).sum(1))
    assert abs(reduced - (-positive + total)) < 1e-10


def test_population_loss_gradient_matches_finite_differences():
    mix = _mixture(k=3, d=3, seed=11)
    a = (0.3 * torch.randn(3, 3, generator=torch.Generator().manual_seed(12), dtype=F64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(clkit.population_pair_info_nce(a, mix, 0.7, 24), a)
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        e = torch.zeros_like(a)
        e[i, j] = h
        fd = (clkit.population_pair_info_nce(a.detach() + e, mix, 0.7, 24)
              - clkit.population_pair_info_nce(a.detach() - e, mix, 0.7, 24)) / (2 * h)
        assert abs(float(fd) - float(grad[i, j])) < 1e-7


def test_minimiser_lies_in_the_fisher_subspace():
    mix = _mixture(k=2, d=4, seed=13, centred=True)
    a0 = 0.3 * torch.randn(4, 2, generator=torch.Generator().manual_seed(14), dtype=F64)
    (a,), result = clkit.minimize_population_loss(
        lambda a: clkit.population_pair_info_nce(a, mix, 1.0, 24), (a0,), newton_steps=30
    )
    basis = clkit.fisher_subspace(mix.weights, mix.means, mix.covariances[0])
    assert float(clkit.energy_outside(a, basis)) < 1e-8
    assert clkit.numerical_rank(a, 1e-3) == basis.shape[1] == 1


def test_clip_loss_is_symmetric_in_the_modalities_and_matches_monte_carlo():
    mv, mt = _mixture(k=2, d=3, seed=15), _mixture(k=2, d=4, seed=16)
    g = torch.Generator().manual_seed(17)
    a_v, a_t = 0.3 * torch.randn(3, 2, generator=g, dtype=F64), 0.3 * torch.randn(4, 2, generator=g, dtype=F64)
    value = float(clkit.population_clip_loss(a_v, a_t, mv, mt, 32))
    assert abs(value - float(clkit.population_clip_loss(a_t, a_v, mt, mv, 32))) < 1e-13
    gen = _gen(7)
    labels = mv.sample_components(200_000, gen)
    xv, xt = mv.sample_given(labels, gen), mt.sample_given(labels, gen)

    def log_mgf(u, m):  # log E_y exp(u.y) for a mixture, closed form
        return 0.5 * ((u @ m.covariances[0]) * u).sum(1) + torch.logsumexp(torch.log(m.weights) + u @ m.means.T, 1)

    pos = ((xv @ a_v) * (xt @ a_t)).sum(1)
    per_pair = -2 * pos + log_mgf(xv @ a_v @ a_t.T, mt) + log_mgf(xt @ a_t @ a_v.T, mv)
    estimate = clkit.monte_carlo_mean(per_pair)
    assert abs(estimate.mean - value) <= 4 * estimate.stderr


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda m: clkit.population_pair_info_nce(torch.ones(4, 2, dtype=F64), m, 1.0), "a"),
        (lambda m: clkit.population_pair_info_nce(torch.ones(5, 2, dtype=F64), m, 1.5), "delta"),
        (lambda m: clkit.population_pair_info_nce(torch.ones(5, 2, dtype=F64), m, 1.0, 0), "n_quadrature"),
        (lambda m: clkit.sample_augmentation_pairs(m, 10, -0.1, _gen(0)), "delta"),
        (lambda m: clkit.fisher_subspace(m.weights, m.means, -torch.eye(5, dtype=F64)), "cov"),
        (lambda m: clkit.fisher_subspace(m.weights[:2], m.means, m.covariances[0]), "weights"),
        (lambda m: clkit.fisher_subspace(m.weights, torch.zeros(3, 5, dtype=F64), m.covariances[0]), "means"),
        (lambda m: clkit.spectral_subspace(m, 0), "r"),
        (lambda m: clkit.gauss_hermite_grid(-1, 3), "dim"),
        (lambda m: clkit.minimize_population_loss(lambda a: a.sum(), ()), "initial"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(_mixture())


def test_population_loss_refuses_mixtures_without_shared_covariance():
    mix = _mixture(k=2, d=3)
    covs = torch.stack([mix.covariances[0], 2 * mix.covariances[0]])
    other = clkit.GaussianMixture(mix.weights, mix.means, covs)
    with pytest.raises(ValueError, match="shared covariance"):
        clkit.population_pair_info_nce(torch.ones(3, 2, dtype=F64), other, 1.0)


def _pairs(n: int = 120, seed: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mix = _mixture(k=2, d=4, seed=seed)
    x, x_hat, _, _ = clkit.sample_augmentation_pairs(mix, n, 1.0, _gen(seed))
    a0 = 0.3 * torch.randn(4, 1, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    return x, x_hat, a0


def test_minibatch_sgd_with_one_full_batch_is_gradient_descent_on_the_full_loss():
    # batch_size = n: every step sees all pairs (permuted together, which leaves the loss unchanged),
    # so the iterates are plain gradient descent with the linearly decaying rate, written out here.
    x, x_hat, a0 = _pairs()
    epochs, lr = 15, 0.2
    a_fn, trajectory = clkit.train_pair_info_nce_minibatch(
        x, x_hat, a0, batch_size=x.shape[0], epochs=epochs, lr=lr, generator=_gen(0), optimizer="sgd"
    )
    a = a0.clone()
    for t in range(epochs):
        a_var = a.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(clkit.pair_info_nce(x @ a_var, x_hat @ a_var), a_var)
        a = a - lr * (1 - t / epochs) * g
        assert torch.allclose(trajectory[t + 1], a, rtol=0, atol=1e-12)
    assert torch.allclose(a_fn, a, rtol=0, atol=1e-12)
    assert trajectory.shape == (epochs + 1, 4, 1) and torch.equal(trajectory[0], a0)


@pytest.mark.parametrize("drop_last", [False, True])
def test_minibatch_adam_matches_torch_optim_adam_on_the_same_batches(drop_last):
    x, x_hat, a0 = _pairs(n=60)
    n, batch, epochs, lr = 60, 16, 5, 0.05  # 60 = 3 x 16 + 12: the smaller last batch is kept unless drop_last
    a_fn, _ = clkit.train_pair_info_nce_minibatch(x, x_hat, a0, batch_size=batch, epochs=epochs, lr=lr,
                                                  generator=_gen(1), drop_last=drop_last)
    starts = range(0, 48 if drop_last else n, batch)
    gen = _gen(1)  # replay the same permutations
    a = a0.clone().requires_grad_(True)
    opt = torch.optim.Adam([a], lr=lr)
    total = epochs * len(starts)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / total)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in starts:
            idx = order[s:s + batch]
            opt.zero_grad()
            clkit.pair_info_nce(x[idx] @ a, x_hat[idx] @ a).backward()
            opt.step()
            sched.step()
    assert torch.allclose(a_fn, a.detach(), rtol=0, atol=1e-12)


def test_minibatch_training_converges_to_the_full_batch_minimiser_when_batches_are_full():
    x, x_hat, a0 = _pairs()

    def loss(a):
        return clkit.pair_info_nce(x @ a, x_hat @ a)

    (a_star,), _ = clkit.minimize_population_loss(loss, (a0,), gtol=1e-10)
    a_fn, _ = clkit.train_pair_info_nce_minibatch(x, x_hat, a0, batch_size=x.shape[0], epochs=400, lr=0.05,
                                                  generator=_gen(2))
    assert float(clkit.principal_angles(a_fn, a_star).max()) < 1e-4
    assert float(loss(a_fn) - loss(a_star)) < 1e-8


def test_minibatch_training_is_deterministic_given_the_seed():
    x, x_hat, a0 = _pairs()
    first = clkit.train_pair_info_nce_minibatch(x, x_hat, a0, batch_size=16, epochs=3, lr=0.05, generator=_gen(3))
    second = clkit.train_pair_info_nce_minibatch(x, x_hat, a0, batch_size=16, epochs=3, lr=0.05, generator=_gen(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    third = clkit.train_pair_info_nce_minibatch(x, x_hat, a0, batch_size=16, epochs=3, lr=0.05, generator=_gen(4))
    assert not torch.equal(first[0], third[0])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"batch_size": 1}, "batch_size"),
        ({"batch_size": 500}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -0.1}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
    ],
)
def test_minibatch_training_bad_input_raises_value_error_naming_the_argument(kwargs, argument):
    x, x_hat, a0 = _pairs()
    options = {"batch_size": 16, "epochs": 2, "lr": 0.05, "generator": _gen(5)} | kwargs
    with pytest.raises(ValueError, match=argument):
        clkit.train_pair_info_nce_minibatch(x, x_hat, a0, **options)
    with pytest.raises(ValueError, match="x_hat"):
        clkit.train_pair_info_nce_minibatch(x, x_hat[:-1], a0, batch_size=16, epochs=2, lr=0.05, generator=_gen(5))
    with pytest.raises(ValueError, match="a0"):
        clkit.train_pair_info_nce_minibatch(x, x_hat, a0[:-1], batch_size=16, epochs=2, lr=0.05, generator=_gen(5))
