"""clkit.alpha_cl against independent computations: loops, numpy, autograd, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import clkit

DTYPE = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return clkit.make_generator(seed, "cpu")


def _pattern_model(sigma: float = 0.5) -> clkit.LatentPatternModel:
    norms = torch.tensor([2.0, 1.6, 1.2], dtype=DTYPE)
    patterns = torch.zeros(3, 4, dtype=DTYPE)
    patterns[range(3), range(3)] = norms
    patterns[1, 3] = 0.4
    return clkit.LatentPatternModel(patterns, torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE), sigma)


def _random_unit(d: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(d, dtype=DTYPE, generator=gen)
    return w / w.norm()


def test_contrastive_covariance_matches_pairwise_loop_with_nonsymmetric_alpha():
    gen = _gen()
    x, x_pos = torch.randn(9, 3, dtype=DTYPE, generator=gen), torch.randn(9, 3, dtype=DTYPE, generator=gen)
    alpha = torch.randn(9, 9, dtype=DTYPE, generator=gen)
    expected = np.zeros((3, 3))
    xn, xpn, an = x.numpy(), x_pos.numpy(), alpha.numpy()
    for i in range(9):
        for j in range(9):
            expected += an[i, j] * (np.outer(xn[i] - xn[j], xn[i] - xn[j]) - np.outer(xn[i] - xpn[i], xn[i] - xpn[i]))
    expected /= 2 * 81
    np.testing.assert_allclose(clkit.contrastive_covariance(x, x_pos, alpha).numpy(), expected, rtol=1e-12, atol=1e-14)


def test_contrastive_covariance_uniform_alpha_is_covariance_minus_half_positive_scatter():
    gen = _gen(1)
    x, x_pos = torch.randn(50, 4, dtype=DTYPE, generator=gen), torch.randn(50, 4, dtype=DTYPE, generator=gen)
    d = (x - x_pos).numpy()
    expected = np.cov(x.numpy().T, bias=True) - d.T @ d / (2 * 50)
    got = clkit.contrastive_covariance(x, x_pos, torch.ones(50, 50, dtype=DTYPE))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_contrastive_covariance_rejects_bad_input_naming_the_argument():
    x = torch.zeros(4, 2, dtype=DTYPE)
    with pytest.raises(ValueError, match="x_pos"):
        clkit.contrastive_covariance(x, torch.zeros(3, 2, dtype=DTYPE), torch.ones(4, 4, dtype=DTYPE))
    with pytest.raises(ValueError, match="alpha"):
        clkit.contrastive_covariance(x, x, torch.ones(3, 4, dtype=DTYPE))
    with pytest.raises(ValueError, match="alpha"):
        clkit.contrastive_covariance(x, x, torch.full((4, 4), math.nan, dtype=DTYPE))
    with pytest.raises(ValueError, match="x"):
        clkit.contrastive_covariance(torch.zeros(4, dtype=DTYPE), x, torch.ones(4, 4, dtype=DTYPE))


def test_info_nce_distance_matches_naive_loop():
    gen = _gen(2)
    f, f_pos = torch.randn(7, 3, dtype=DTYPE, generator=gen), torch.randn(7, 3, dtype=DTYPE, generator=gen)
    tau, eps = 0.7, 0.5
    total = 0.0
    for i in range(7):
        d_i = 0.5 * float((f[i] - f_pos[i]).pow(2).sum())
        denom = eps * math.exp(-d_i / tau) + sum(
            math.exp(-0.5 * float((f[i] - f[j]).pow(2).sum()) / tau) for j in range(7) if j != i
        )
        total += -tau * math.log(math.exp(-d_i / tau) / denom)
    assert float(clkit.info_nce_distance(f, f_pos, tau, eps)) == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("eps", [0.0, 1.0, 3.0])
def test_info_nce_gradient_equals_minus_alpha_cl_energy_gradient(eps: float):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(DTYPE)
    gen = _gen(3)
    x, x_pos = torch.randn(16, 5, dtype=DTYPE, generator=gen), torch.randn(16, 5, dtype=DTYPE, generator=gen)
    params = list(net.parameters())
    g_nce = torch.autograd.grad(clkit.info_nce_distance(net(x), net(x_pos), 0.3, eps), params)
    f, f_pos = net(x), net(x_pos)
    g_energy = torch.autograd.grad(clkit.alpha_cl_energy(f, f_pos, clkit.info_nce_alpha(f, f_pos, 0.3, eps)), params)
    a = torch.cat([g.flatten() for g in g_nce])
    b = torch.cat([g.flatten() for g in g_energy])
    assert float((a + b).norm() / a.norm()) < 1e-12


def test_info_nce_alpha_is_detached_with_zero_diagonal_and_rows_summing_below_two_n_squared():
    gen = _gen(4)
    f = torch.randn(6, 2, dtype=DTYPE, generator=gen, requires_grad=True)
    alpha = clkit.info_nce_alpha(f, f + 0.1, 1.0, eps=1.0)
    assert not alpha.requires_grad
    assert torch.all(alpha.diagonal() == 0)
    assert torch.all(alpha.sum(1) < 2 * 36)


def test_info_nce_distance_with_unit_rows_is_tau_times_cosine_cross_entropy():
    gen = _gen(5)
    z = torch.nn.functional.normalize(torch.randn(10, 4, dtype=DTYPE, generator=gen), dim=1)
    z_pos = torch.nn.functional.normalize(torch.randn(10, 4, dtype=DTYPE, generator=gen), dim=1)
    logits = torch.cat([(z * z_pos).sum(1, keepdim=True), (z @ z.T).masked_fill(torch.eye(10, dtype=torch.bool), -math.inf)], 1)
    ce = torch.nn.functional.cross_entropy(logits / 0.5, torch.zeros(10, dtype=torch.long), reduction="sum")
    assert float(clkit.info_nce_distance(z, z_pos, 0.5, 1.0)) == pytest.approx(0.5 * float(ce), rel=1e-12)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_one_layer_gradient_of_half_objective_is_a_times_w(activation: str):
    gen = _gen(6)
    x, x_pos = torch.randn(40, 4, dtype=DTYPE, generator=gen), torch.randn(40, 4, dtype=DTYPE, generator=gen)
    alpha = torch.rand(40, 40, dtype=DTYPE, generator=gen)
    w = _random_unit(4, gen).requires_grad_(True)
    h = (lambda u: u) if activation == "linear" else torch.relu
    energy = 0.5 * clkit.contrastive_covariance(h(x @ w)[:, None], h(x_pos @ w)[:, None], alpha)[0, 0]
    (grad,) = torch.autograd.grad(energy, w)
    a_w = clkit.one_layer_matrix(x, x_pos, w.detach(), alpha, activation)
    torch.testing.assert_close(grad, a_w @ w.detach(), rtol=1e-12, atol=1e-14)
    assert float(clkit.one_layer_objective(x, x_pos, w.detach(), alpha, activation)) == pytest.approx(
        2 * float(energy.detach()), rel=1e-12
    )


def test_gaussian_alpha_matches_numpy_formula():
    gen = _gen(7)
    x0, w = torch.randn(5, 3, dtype=DTYPE, generator=gen), _random_unit(3, gen)
    f = np.maximum(x0.numpy() @ w.numpy(), 0.0)
    expected = np.exp(-((f[:, None] - f[None, :]) ** 2) / (2 * 0.8))
    np.testing.assert_allclose(clkit.gaussian_alpha(x0, w, 0.8).numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_gated_moments_match_monte_carlo(activation: str):
    model = _pattern_model()
    gen = _gen(8)
    w = _random_unit(4, gen)
    m, s = model.gated_moments(w, activation)
    n = 200_000
    for k in range(3):
        x = model.patterns[k] + model.sigma * torch.randn(n, 4, dtype=DTYPE, generator=gen)
        g = clkit.gated_data(x, w, activation)
        se_mean = g.std(0) / math.sqrt(n)
        assert torch.all((g.mean(0) - m[k]).abs() <= 5 * se_mean + 1e-12)
        cov = torch.cov(g.T)
        assert torch.allclose(cov, s[k], atol=0.02)


@pytest.mark.parametrize("tau", [None, 1.0])
def test_expected_empirical_matrix_matches_monte_carlo(tau: float | None):
    model = _pattern_model()
    gen = _gen(9)
    w, u = _random_unit(4, gen), _random_unit(4, gen)
    n, batches = 60, 400
    forms = []
    for _ in range(batches):
        labels, x, x_pos = model.sample(n, gen)
        alpha = torch.ones(n, n, dtype=DTYPE) if tau is None else clkit.gaussian_alpha(model.patterns[labels], w, tau)
        forms.append(float(u @ clkit.one_layer_matrix(x, x_pos, w, alpha) @ u))
    estimate = clkit.monte_carlo_mean(torch.tensor(forms))
    expected = float(u @ model.expected_empirical_matrix(w, n, "relu", tau) @ u)
    assert abs(estimate.mean - expected) <= 4.5 * estimate.stderr


@pytest.mark.parametrize(("activation", "tau"), [("linear", None), ("relu", None), ("relu", 0.7), ("linear", 2.0)])
def test_population_matrices_batched_equals_one_at_a_time(activation: str, tau: float | None):
    model = _pattern_model()
    w = torch.randn(5, 4, dtype=DTYPE, generator=_gen(10))
    stacked = torch.stack([model.population_matrix(row, activation, tau) for row in w])
    torch.testing.assert_close(model.population_matrices(w, activation, tau), stacked, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau", [None, 1.5])
def test_local_roughness_matches_autograd_jacobian(tau: float | None):
    model = _pattern_model()
    w = _random_unit(4, _gen(11))
    rho, _ = clkit.local_roughness(lambda v: model.population_matrix(v, "relu", tau), w, step=1e-5)
    jac = torch.autograd.functional.jacobian(lambda v: model.population_matrix(v / v.norm(), "relu", tau) @ w, w)
    rho_autograd = float(torch.linalg.matrix_norm(jac @ clkit.tangent_basis(w), ord=2))
    assert rho == pytest.approx(rho_autograd, rel=1e-6)


@pytest.mark.parametrize("tau", [None, 0.5, 2.0])
def test_roughness_bound_holds_at_random_points(tau: float | None):
    model = _pattern_model()
    gen = _gen(12)
    for _ in range(10):
        w = _random_unit(4, gen)
        rho, _ = clkit.local_roughness(lambda v: model.population_matrix(v, "relu", tau), w)
        assert rho <= model.roughness_bound(w, "relu", tau) + 1e-9


def test_linear_activation_with_uniform_alpha_has_zero_roughness():
    model = _pattern_model()
    w = _random_unit(4, _gen(13))
    rho, _ = clkit.local_roughness(lambda v: model.population_matrix(v, "linear", None), w)
    assert rho < 1e-10
    assert model.roughness_bound(w, "linear", None) == 0.0


def test_eigengap_of_a_diagonal_matrix():
    a = torch.diag(torch.tensor([3.0, 1.0, 2.0], dtype=DTYPE))
    lam, gap = clkit.eigengap(a, torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE))
    assert (lam, gap) == pytest.approx((3.0, 1.0))
    lam, gap = clkit.eigengap(a, torch.tensor([0.0, 1.0, 0.0], dtype=DTYPE))
    assert (lam, gap) == pytest.approx((1.0, -2.0))


def test_tangent_basis_is_orthonormal_and_orthogonal_to_w():
    w = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=DTYPE)
    e = clkit.tangent_basis(w)
    torch.testing.assert_close(e.T @ e, torch.eye(3, dtype=DTYPE))
    assert float((e.T @ w).abs().max()) < 1e-14


def test_alpha_cl_dynamics_with_linear_activation_reaches_top_eigenvector():
    model = _pattern_model()
    w0 = torch.randn(6, 4, dtype=DTYPE, generator=_gen(14))
    w = clkit.alpha_cl_dynamics(lambda v: model.population_matrices(v, "linear", None), w0, lr=0.5, steps=500)
    top = torch.linalg.eigh(model.population_matrix(w0[0], "linear", None)).eigenvectors[:, -1]
    assert float((w @ top).abs().min()) > 1 - 1e-9


def test_same_seed_gives_same_samples():
    model = _pattern_model()
    a = model.sample(100, _gen(15))
    b = model.sample(100, _gen(15))
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_bad_arguments_raise_value_errors_naming_them():
    model = _pattern_model()
    x = torch.zeros(3, 4, dtype=DTYPE)
    w = torch.ones(4, dtype=DTYPE)
    with pytest.raises(ValueError, match="activation"):
        clkit.gated_data(x, w, "tanh")
    with pytest.raises(ValueError, match="w"):
        clkit.gated_data(x, torch.zeros(4, dtype=DTYPE))
    with pytest.raises(ValueError, match="tau"):
        clkit.gaussian_alpha(x, w, 0.0)
    with pytest.raises(ValueError, match="eps"):
        clkit.info_nce_distance(x, x, 1.0, eps=-1.0)
    with pytest.raises(ValueError, match="probs"):
        clkit.LatentPatternModel(model.patterns, torch.tensor([0.5, 0.5, 0.5], dtype=DTYPE), 0.5)
    with pytest.raises(ValueError, match="sigma"):
        clkit.LatentPatternModel(model.patterns, model.probs, 0.0)
    with pytest.raises(ValueError, match="steps"):
        clkit.alpha_cl_dynamics(lambda v: model.population_matrices(v), w[None], lr=1.0, steps=0)
    with pytest.raises(ValueError, match="step"):
        clkit.local_roughness(lambda v: model.population_matrix(v), w, step=0.0)
    with pytest.raises(ValueError, match="n"):
        model.sample(0, _gen())
