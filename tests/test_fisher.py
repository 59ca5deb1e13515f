"""clkit.fisher against independent computations: Monte Carlo, scipy, scikit-learn, autograd, loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
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


def _lbfgs(loss, initial, *, gtol):
    """Independent route: scipy's L-BFGS-B on ``loss(*matrices)`` (autograd gradient), flattened.

    Returns ``(matrices, result)`` with scipy's ``OptimizeResult`` (``jac``, ``fun``).
    """
    shapes, sizes = [t.shape for t in initial], [t.numel() for t in initial]

    def unpack(vector):
        flat = torch.as_tensor(vector, dtype=F64)
        return [p.reshape(s).requires_grad_(True) for p, s in zip(flat.split(sizes), shapes)]

    def value_and_grad(vector):
        params = unpack(vector)
        value = loss(*params)
        grads = torch.autograd.grad(value, params)
        return float(value.detach()), torch.cat([g.reshape(-1) for g in grads]).numpy()

    x0 = torch.cat([t.detach().reshape(-1) for t in initial]).numpy()
    result = scipy.optimize.minimize(value_and_grad, x0, jac=True, method="L-BFGS-B",
                                     options={"gtol": gtol, "ftol": float(np.finfo(np.float64).eps),
                                              "maxiter": 20_000, "maxcor": 30})
    return tuple(p.detach() for p in unpack(result.x)), result



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


def _brute_force_loss(a: torch.Tensor, mix: clkit.GaussianMixture, delta: float, n: int) -> torch.Tensor:
    """Population InfoNCE by a tensor Gauss-Hermite rule over all r coordinates of z = A^T x (no reduction)."""
    r = a.shape[1]
    nu, c = mix.means @ a, a.T @ mix.covariances[0] @ a
    nodes, weights = clkit.gauss_hermite_grid(r, n)
    chol = torch.linalg.cholesky(c + 1e-300 * torch.eye(r, dtype=F64))
    total = 0.0
    for j in range(mix.n_components):
        z = nu[j] + nodes @ chol.T
        values = 0.5 * ((z @ c) * z).sum(1) + torch.logsumexp(torch.log(mix.weights) + z @ nu.T, dim=1)
        total = total + mix.weights[j] * (weights @ values)
    nu_bar = mix.weights @ nu
    positive = delta * (mix.weights @ nu.pow(2).sum(1)) + (1 - delta) * nu_bar.pow(2).sum()
    return total - positive


def test_population_loss_with_four_components_matches_brute_force_rule():
    # K = 4: the chapter's 3-D reduced rule against a 3-D rule over z itself (r = 3), all nodes.
    mix = _mixture(k=4, d=5, seed=30)
    a = 0.25 * torch.randn(5, 3, generator=torch.Generator().manual_seed(31), dtype=F64)
    reduced = float(clkit.population_pair_info_nce(a, mix, 0.6, 24))
    brute = float(_brute_force_loss(a, mix, 0.6, 36))
    assert abs(reduced - brute) < 1e-9


def test_minimiser_lies_in_the_fisher_subspace():
    # Independent of the chapter's code path: a brute-force r-dimensional loss written here,
    # minimised over A with r = dim S_F by scipy's L-BFGS; then compared with S_F and with the
    # PSD-cone Newton solver of clkit.
    mix = _mixture(k=3, d=4, seed=13, centred=True)
    basis = clkit.fisher_subspace(mix.weights, mix.means, mix.covariances[0])
    assert basis.shape[1] == 2

    def value_and_grad(flat):
        a = torch.tensor(flat, dtype=F64).reshape(4, 2).requires_grad_(True)
        value = _brute_force_loss(a, mix, 1.0, 30)
        (grad,) = torch.autograd.grad(value, a)
        return float(value.detach()), grad.reshape(-1).numpy()

    x0 = 0.3 * np.random.default_rng(14).standard_normal(8)
    res = scipy.optimize.minimize(value_and_grad, x0, jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000})
    assert np.abs(res.jac).max() < 1e-7  # the optimiser succeeded before we use its answer
    a_lbfgs = torch.tensor(res.x, dtype=F64).reshape(4, 2)
    assert float(clkit.principal_angles(a_lbfgs, basis).max()) < 1e-6
    sol = clkit.minimize_info_nce_psd(mix, 1.0, 30)
    assert sol.rank == 2
    assert float(clkit.principal_angles(sol.a, basis).max()) < 1e-12
    m_lbfgs = a_lbfgs @ a_lbfgs.T
    assert float((m_lbfgs - sol.m).norm() / sol.m.norm()) < 1e-6


def test_kkt_certificate_accepts_the_minimiser_and_rejects_a_rescaled_one():
    mix = _mixture(k=2, d=4, seed=32)
    sol = clkit.minimize_info_nce_psd(mix, 0.8, 30)
    cert = clkit.psd_kkt_certificate(sol.gradient, sol.a)
    assert cert["min_eig"] > -1e-12 and cert["complementarity"] < 1e-12
    a_wrong = 1.1 * sol.a.clone().requires_grad_(True)
    m_wrong = (a_wrong @ a_wrong.T).detach().requires_grad_(True)
    (z_wrong,) = torch.autograd.grad(clkit.population_info_nce_m(m_wrong, mix, 0.8, 30), m_wrong)
    assert clkit.psd_kkt_certificate(z_wrong, a_wrong.detach())["complementarity"] > 1e-3


def test_kkt_certificate_on_an_explicit_pair():
    # Z = diag(0, 0, 2) is PSD and annihilates A = [e1, e2]: optimal; slack 2 on the complement.
    z = torch.diag(torch.tensor([0.0, 0.0, 2.0], dtype=F64))
    a = torch.eye(3, dtype=F64)[:, :2]
    cert = clkit.psd_kkt_certificate(z, a)
    assert cert["min_eig"] == 0.0 and cert["complementarity"] == 0.0 and abs(cert["slack"] - 2) < 1e-15
    z_bad = torch.diag(torch.tensor([0.0, -1.0, 2.0], dtype=F64))
    assert clkit.psd_kkt_certificate(z_bad, a)["min_eig"] == -1.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_analytic_gradient_and_hessian_match_autograd(k):
    from clkit.population_solvers import _info_nce_derivatives, _symmetric_basis

    mix = _mixture(k=k, d=3, seed=33)
    m = 0.05 * torch.eye(3, dtype=F64) + 0.02 * torch.ones(3, 3, dtype=F64)
    basis = _symmetric_basis(3, F64, "cpu")
    value, z, hess = _info_nce_derivatives(m, mix, 0.7, 40 if k < 4 else 16, basis)
    assert value == pytest.approx(float(clkit.population_info_nce_m(m, mix, 0.7, 40 if k < 4 else 16)), abs=1e-14)

    def f(c):
        return clkit.population_info_nce_m(m + torch.einsum("q,qab->ab", c, basis), mix, 0.7, 40 if k < 4 else 16)

    c0 = torch.zeros(basis.shape[0], dtype=F64)
    np.testing.assert_allclose(hess.numpy(), torch.autograd.functional.hessian(f, c0).numpy(), atol=1e-9)
    np.testing.assert_allclose(torch.einsum("qab,ab->q", basis, z).numpy(),
                               torch.autograd.functional.jacobian(f, c0).numpy(), atol=1e-12)


def _symmetric_counter_example() -> clkit.GaussianMixture:
    means = torch.tensor([[1.5, 1.2, 0.0], [-1.5, 1.2, 0.0]], dtype=F64)
    return clkit.GaussianMixture(torch.tensor([0.5, 0.5], dtype=F64), means, torch.eye(3, dtype=F64))


def test_counter_example_minimiser_has_rank_one_and_the_one_dimensional_size():
    mix = _symmetric_counter_example()
    assert clkit.fisher_subspace(mix.weights, mix.means, mix.covariances[0]).shape[1] == 2
    sol = clkit.minimize_info_nce_psd(mix, 1.0, 30)
    assert sol.rank == 1
    assert clkit.psd_kkt_certificate(sol.gradient, sol.a)["min_eig"] > -1e-13
    # independent: alpha* from the derivative of -s^2 a + (1 + s^2) a^2 / 2 + E log cosh(a s (s + xi))
    xi, w = np.polynomial.hermite.hermgauss(80)
    xi, w = np.sqrt(2) * xi, w / np.sqrt(np.pi)
    s2 = 1.5**2
    slope = np.sqrt(s2) * (np.sqrt(s2) + xi)
    alpha = scipy.optimize.brentq(lambda a: -s2 + (1 + s2) * a + w @ (slope * np.tanh(a * slope)), 1e-9, 5.0,
                                  xtol=1e-15)
    assert abs(float(torch.linalg.svdvals(sol.a)[0] ** 2) - alpha) < 1e-10


def test_inclusion_lemma_removing_the_oblique_outside_part_lowers_the_loss():
    mix = _mixture(k=2, d=5, seed=34)
    sigma_inv_mu = torch.linalg.solve(mix.covariances[0], mix.means.T)
    g = torch.Generator().manual_seed(35)
    for _ in range(5):
        a = 0.4 * torch.randn(5, 2, generator=g, dtype=F64)  # r = dim S_F: A_F has full rank
        coef = torch.linalg.lstsq(mix.means @ sigma_inv_mu, mix.means @ a).solution
        a_f = sigma_inv_mu @ coef
        assert torch.allclose(mix.means @ (a - a_f), torch.zeros(2, 2, dtype=F64), atol=1e-12)
        assert float(_brute_force_loss(a, mix, 0.5, 30)) > float(_brute_force_loss(a_f, mix, 0.5, 30))


def test_in_batch_mean_variance_without_replacement_matches_enumeration():
    # The exact step of the in-batch bias lemma: over all m-subsets of N = n - 1 values, the mean
    # has variance s^2 / m * (N - m) / (N - 1), s^2 the population variance of the values.
    import itertools

    values = np.random.default_rng(36).exponential(size=9)
    big_n, m = values.size, 4
    means = np.array([values[list(c)].mean() for c in itertools.combinations(range(big_n), m)])
    s2 = values.var()
    assert abs(means.var() - s2 / m * (big_n - m) / (big_n - 1)) < 1e-14


def test_small_delta_leading_term_solves_the_sylvester_equation_and_is_the_closed_form_when_centred():
    for centred in (True, False):
        mix = _mixture(k=3, d=4, seed=37, centred=centred)
        mom = clkit.mixture_moments(mix)
        m1 = clkit.small_delta_leading_term(mix)
        residual = clkit.small_delta_gradient(m1, mom["sigma_tot"], mom["s2"], mom["b_c"])
        assert float(residual.abs().max()) < 1e-12
        if centred:
            closed = clkit.centred_small_delta_term(mom["sigma_tot"], mom["b_c"])
            assert torch.allclose(m1, closed, atol=1e-12)


def test_minimiser_at_small_delta_approaches_delta_times_m1():
    mix = _mixture(k=2, d=3, seed=38, centred=True)
    m1 = clkit.small_delta_leading_term(mix)
    errors = [float((clkit.minimize_info_nce_psd(mix, d, 30).m / d - m1).norm() / m1.norm()) for d in (0.02, 0.01)]
    assert 1.7 < errors[0] / errors[1] < 2.3


def test_closed_forms_accept_sympy_and_agree_with_torch():
    import sympy as sp

    mix = _mixture(k=3, d=2, seed=39)
    m = torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=F64)
    u = torch.tensor([0.2, -0.4], dtype=F64)
    w_s = [sp.Rational(str(float(w))) for w in mix.weights]
    mu_s = [sp.Matrix([sp.Rational(str(float(v))) for v in row]) for row in mix.means]
    m_s = sp.Matrix(m.tolist())
    sigma_s = sp.Matrix(mix.covariances[0].tolist())
    att = clkit.attraction_term(m, mix.weights, mix.means, 0.3)
    att_s = clkit.attraction_term(m_s, w_s, mu_s, sp.Rational(3, 10))
    assert abs(float(att) - float(att_s)) < 1e-12
    lm = clkit.mixture_log_mgf(u, mix.weights, mix.means, mix.covariances[0])
    lm_s = clkit.mixture_log_mgf(sp.Matrix(u.tolist()), w_s, mu_s, sigma_s)
    assert abs(float(lm) - float(lm_s)) < 1e-12
    bc = clkit.between_class_scatter(mix.weights, mix.means)
    bc_s = clkit.between_class_scatter(w_s, mu_s)
    assert np.allclose(bc.numpy(), np.array(bc_s.tolist(), dtype=float), atol=1e-12)


def test_clip_newton_in_n_matches_lbfgs_and_lies_in_the_fisher_subspaces():
    mv, mt = _mixture(k=2, d=3, seed=40), _mixture(k=2, d=3, seed=41)
    n_star, grad, _ = clkit.minimize_clip_n(mv, mt, 30)
    assert float(grad.abs().max()) < 1e-12
    init = (0.1 * torch.ones(3, 3, dtype=F64),)
    (n_lbfgs,), res = _lbfgs(
        lambda n: clkit.population_clip_loss_n(n, mv, mt, 30), init, gtol=1e-11)
    assert np.abs(res.jac).max() < 1e-9  # strictly convex in N: L-BFGS converges too
    assert float((n_lbfgs - n_star).norm() / n_star.norm()) < 1e-7
    for mat, mix in ((n_star, mv), (n_star.T, mt)):
        basis = clkit.fisher_subspace(mix.weights, mix.means, mix.covariances[0])
        assert float(clkit.principal_angles(mat, basis, rtol=1e-8).max()) < 1e-10


def test_clip_loss_fully_sampled_matches_the_closed_form():
    # Pairs and the y of both denominators sampled; replicates independent.
    mv, mt = _mixture(k=2, d=3, seed=43), _mixture(k=2, d=2, seed=44)
    g = torch.Generator().manual_seed(45)
    a_v, a_t = 0.3 * torch.randn(3, 2, generator=g, dtype=F64), 0.3 * torch.randn(2, 2, generator=g, dtype=F64)
    gen = _gen(8)
    replicates = []
    for _ in range(40):
        labels = mv.sample_components(200, gen)
        xv, xt = mv.sample_given(labels, gen), mt.sample_given(labels, gen)
        yv, _ = mv.sample(5_000, gen)
        yt, _ = mt.sample(5_000, gen)
        zv, zt = xv @ a_v, xt @ a_t
        log_v = torch.logsumexp(zv @ (yt @ a_t).T, dim=1) - math.log(5_000)
        log_t = torch.logsumexp(zt @ (yv @ a_v).T, dim=1) - math.log(5_000)
        replicates.append(float((-2 * (zv * zt).sum(1) + log_v + log_t).mean()))
    estimate = clkit.monte_carlo_mean(torch.tensor(replicates, dtype=F64))
    theory = float(clkit.population_clip_loss(a_v, a_t, mv, mt, 32))
    # + 2e-4 bounds the downward bias of log(mean of 5000 exponentials), twice Var/(2 n_y) ~ 1e-5.
    assert abs(estimate.mean - theory) <= 4 * estimate.stderr + 2e-4


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
        (lambda m: clkit.population_info_nce_m(torch.eye(4, dtype=F64), m, 1.0), "m"),
        (lambda m: clkit.expected_log_sum_exp(m.weights, torch.zeros(2, 2, dtype=F64), torch.eye(3, dtype=F64)), "g"),
        (lambda m: clkit.minimize_info_nce_psd(m, 1.0, barriers=(1e-4, 1e-2)), "barriers"),
        (lambda m: clkit.minimize_info_nce_psd(m, -0.5), "delta"),
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

    (a_star,), _ = _lbfgs(loss, (a0,), gtol=1e-10)
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


def test_batched_minibatch_training_follows_each_unbatched_run():
    sets = [_pairs(seed=30 + s) for s in range(3)]
    x = torch.stack([p[0] for p in sets])
    x_hat = torch.stack([p[1] for p in sets])
    a0 = torch.stack([p[2] for p in sets])
    a_b, traj_b = clkit.train_pair_info_nce_minibatch_batched(
        x, x_hat, a0, batch_size=16, epochs=3, lr=0.05, generators=[_gen(40 + s) for s in range(3)],
        drop_last=True)
    assert traj_b.shape == (3, 4) + tuple(a0.shape[1:])
    for s in range(3):
        a_s, traj_s = clkit.train_pair_info_nce_minibatch(
            x[s], x_hat[s], a0[s], batch_size=16, epochs=3, lr=0.05, generator=_gen(40 + s), drop_last=True)
        torch.testing.assert_close(a_b[s], a_s, rtol=0, atol=1e-12)
        torch.testing.assert_close(traj_b[s], traj_s, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="generators"):
        clkit.train_pair_info_nce_minibatch_batched(x, x_hat, a0, batch_size=16, epochs=1, lr=0.05,
                                                    generators=[_gen(1)])


def test_batched_pair_info_nce_gradient_by_hand_matches_autograd_per_set():
    from clkit.infonce_training import _batched_pair_info_nce_gradient

    sets = [_pairs(n=24, seed=60 + s) for s in range(3)]
    x = torch.stack([p[0] for p in sets])
    x_hat = torch.stack([p[1] for p in sets])
    a = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    grad = _batched_pair_info_nce_gradient(x, x_hat, a)
    for s in range(3):
        a_var = a[s].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(clkit.pair_info_nce(x[s] @ a_var, x_hat[s] @ a_var), a_var)
        torch.testing.assert_close(grad[s], expected, rtol=1e-12, atol=1e-13)  # round-off


def test_rank_one_newton_derivatives_match_autograd_and_its_minimiser_matches_lbfgs():
    from clkit.infonce_training import _rank_one_pair_derivatives

    sets = [_pairs(seed=50 + s) for s in range(2)]
    x = torch.stack([p[0] for p in sets])
    x_hat = torch.stack([p[1] for p in sets])
    a0 = torch.stack([p[2][:, :1] for p in sets])
    value, grad, hess = _rank_one_pair_derivatives(x, x_hat, a0[..., 0])
    for s in range(2):
        def loss(v: torch.Tensor, s: int = s) -> torch.Tensor:
            return clkit.pair_info_nce(x[s] @ v[:, None], x_hat[s] @ v[:, None])

        torch.testing.assert_close(value[s], loss(a0[s, :, 0]), rtol=0, atol=1e-13)
        torch.testing.assert_close(hess[s], torch.autograd.functional.hessian(loss, a0[s, :, 0]),
                                   rtol=0, atol=1e-12)
        v = a0[s, :, 0].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(v), v)
        torch.testing.assert_close(grad[s], g, rtol=0, atol=1e-13)
    a_n, grad_n, _ = clkit.minimize_pair_info_nce_rank_one(x, x_hat, a0)
    assert float(grad_n.abs().max()) < 1e-12
    for s in range(2):
        (a_l,), fit = _lbfgs(
            lambda b, s=s: clkit.pair_info_nce(x[s] @ b, x_hat[s] @ b), (a0[s],), gtol=1e-10)
        assert float(np.abs(fit.jac).max()) < 1e-9
        assert float(clkit.principal_angles(a_l, a_n[s]).max()) < 1e-6
        # the same point, not its mirror image -a, nor a different critical point
        assert abs(float(fit.fun) - float(clkit.pair_info_nce(x[s] @ a_n[s], x_hat[s] @ a_n[s]))) < 1e-12


@pytest.mark.parametrize("k, dims", [(1, (3, 2)), (2, (3, 4)), (3, (4, 3))])
def test_clip_derivatives_by_hand_match_autograd(k, dims):
    # Price's theorem differentiates the exact Gaussian expectation; autograd differentiates the
    # quadrature rule. They agree up to the rule's error, which shrinks with the number of nodes
    # (measured at N = 0.2 G, K = 3: 1e-6, 2e-9, 2e-14 at 12, 24, 48 nodes: the rule, not the formula).
    from clkit.population_solvers import _clip_derivatives

    g = torch.Generator().manual_seed(7 + k)
    weights = torch.arange(1, k + 1, dtype=F64)
    weights = weights / weights.sum()
    mixtures = []
    for d in dims:
        x = torch.randn(d, d, generator=g, dtype=F64)
        mixtures.append(clkit.GaussianMixture(weights, torch.randn(k, d, generator=g, dtype=F64),
                                              x @ x.T / d + 0.3 * torch.eye(d, dtype=F64)))
    n = 0.05 * torch.randn(*dims, generator=g, dtype=F64)  # small H: the rule converges fast
    value, grad, hess = _clip_derivatives(n, *mixtures, 48)

    def f(flat: torch.Tensor) -> torch.Tensor:
        return clkit.population_clip_loss_n(flat.reshape(dims), *mixtures, 48)

    flat = n.reshape(-1)
    assert value == pytest.approx(float(f(flat)), abs=1e-14)
    np.testing.assert_allclose(grad.reshape(-1).numpy(), torch.autograd.functional.jacobian(f, flat).numpy(),
                               rtol=0, atol=1e-11)
    np.testing.assert_allclose(hess.numpy(), torch.autograd.functional.hessian(f, flat).numpy(), rtol=0, atol=1e-9)


def test_lyapunov_root_matches_the_kronecker_solve_and_is_psd():
    for seed, centred in ((80, False), (81, True), (82, False)):
        mix = _mixture(k=3, d=5, seed=seed, centred=centred)
        m_lyap = clkit.small_delta_lyapunov_term(mix)
        m_kron = clkit.small_delta_leading_term(mix)
        torch.testing.assert_close(m_lyap, m_kron, rtol=1e-10, atol=1e-12)
        assert float(torch.linalg.eigvalsh(m_lyap)[0]) >= -1e-13 * float(m_lyap.norm())
        mom = clkit.mixture_moments(mix)
        residual = clkit.small_delta_gradient(m_lyap, mom["sigma_tot"], mom["s2"], mom["b_c"])
        assert float(residual.norm()) < 1e-12 * float(mom["b_c"].norm())


def test_exceptional_set_predicts_the_rank_of_m1():
    g = torch.Generator().manual_seed(83)
    d, k = 5, 3
    x = torch.randn(d, d, generator=g, dtype=F64)
    sigma = x @ x.T / d + 0.3 * torch.eye(d, dtype=F64)
    w = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    mean = torch.randn(d, generator=g, dtype=F64)
    dev = torch.randn(k, d, generator=g, dtype=F64)
    dev = dev - w @ dev
    for on_set in (False, True):
        if on_set:
            proj = torch.linalg.solve(sigma, mean)
            dev = dev - torch.outer(dev @ proj, mean) / (mean @ proj)
        means = mean + dev
        mix = clkit.GaussianMixture(w, means, sigma)
        assert clkit.small_delta_exceptional(w, means, sigma) is on_set
        dim_sf = clkit.fisher_subspace(w, means, sigma).shape[1]
        assert clkit.numerical_rank(clkit.small_delta_lyapunov_term(mix), 1e-9) == dim_sf - int(on_set)
    # Euclidean orthogonality is not the condition when Sigma mixes the mean plane
    assert not clkit.small_delta_exceptional(w, means, torch.eye(d, dtype=F64))
    # centred means are never on the set
    assert not clkit.small_delta_exceptional(w, dev, sigma)
    with pytest.raises(ValueError, match="cov"):
        clkit.small_delta_exceptional(w, means, -sigma)


@pytest.mark.parametrize("delta", [0.3, 1.0])
def test_kkt_slack_identity_is_the_autograd_directional_derivative(delta):
    mix = _mixture(k=3, d=4, seed=84)
    sigma = mix.covariances[0]
    a = 0.3 * torch.randn(4, 2, generator=torch.Generator().manual_seed(85), dtype=F64)
    m = a @ a.T
    # e with M Sigma e = 0: orthogonal to Sigma A
    q, _ = torch.linalg.qr(sigma @ a, mode="complete")
    e = q[:, -1]
    m_var = m.clone().requires_grad_(True)
    (z,) = torch.autograd.grad(clkit.population_info_nce_m(m_var, mix, delta, 40), m_var)
    expected = float(e @ (0.5 * (z + z.T)) @ e)
    assert float(clkit.kkt_slack_identity(m, mix, delta, e, 40)) == pytest.approx(expected, rel=1e-9, abs=1e-14)
    with pytest.raises(ValueError, match="delta"):
        clkit.kkt_slack_identity(m, mix, 1.5, e)


def test_kkt_certificate_slack_on_a_subspace():
    # Z = diag(0, 3, 0, 0): on Col(A)^perp = span{e2, e3, e4} the slack is 0, on
    # S ominus Col(A) with S = span{e1, e1 + e2} it is 3 (Z restricted to e2).
    z = torch.diag(torch.tensor([0.0, 3.0, 0.0, 0.0], dtype=F64))
    a = torch.eye(4, dtype=F64)[:, :1]
    s = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]], dtype=F64)
    assert clkit.psd_kkt_certificate(z, a)["slack"] == 0.0
    assert abs(clkit.psd_kkt_certificate(z, a, subspace=s)["slack"] - 3.0) < 1e-14
    with pytest.raises(ValueError, match="subspace"):
        clkit.psd_kkt_certificate(z, a, subspace=s[:3])


def test_infonce_gradient_vanishes_outside_the_span_of_the_means():
    # Z e = 0 for mu_k^T e = 0 (all k) at the minimiser, so the full-complement slack is 0
    # when d > dim S_F, and the slack on S_F is positive for this rank-deficient family.
    sigma = torch.tensor([[1.0, 0.5, 0.3, 0.0], [0.5, 1.5, 0.0, 0.2], [0.3, 0.0, 3.0, 0.0],
                          [0.0, 0.2, 0.0, 0.5]], dtype=F64)
    mean = torch.tensor([0.0, 1.2, 0.0, 0.0], dtype=F64)
    u = torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=F64)
    proj = torch.linalg.solve(sigma, mean)
    u = u - (u @ proj) / (mean @ proj) * mean
    w = torch.tensor([0.3, 0.7], dtype=F64)
    mix = clkit.GaussianMixture(w, torch.stack([mean + 0.7 * u, mean - 0.3 * u]), sigma)
    sol = clkit.minimize_info_nce_psd(mix, 1.0, 24)
    q = clkit.orthonormal_basis(mix.means.T)
    outside = torch.eye(4, dtype=F64) - q @ q.T
    assert float((sol.gradient @ outside).norm()) < 1e-13
    assert abs(clkit.psd_kkt_certificate(sol.gradient, sol.a)["slack"]) < 1e-13
    s_f = clkit.fisher_subspace(mix.weights, mix.means, sigma)
    assert clkit.psd_kkt_certificate(sol.gradient, sol.a, subspace=s_f)["slack"] > 1e-4
