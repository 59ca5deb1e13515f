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
        g = x if activation == "linear" else x * (x @ w > 0).to(DTYPE)[:, None]
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
def test_population_matrix_batched_equals_the_pair_sum_one_row_at_a_time(activation: str, tau: float | None):
    model = _pattern_model()
    w = torch.randn(5, 4, dtype=DTYPE, generator=_gen(10))
    p = model.probs
    for k, row in enumerate(w):
        m, _ = model.gated_moments(row, activation)
        kappa = model.kernel(row, activation, tau)
        loop = sum(0.5 * p[a] * p[b] * kappa[a, b] * torch.outer(m[a] - m[b], m[a] - m[b])
                   for a in range(3) for b in range(3))
        torch.testing.assert_close(model.population_matrix(w, activation, tau)[k], loop, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(model.population_matrix(row, activation, tau), loop, rtol=1e-12, atol=1e-14)


def _analytic_b(model: clkit.LatentPatternModel, w: torch.Tensor, tau: float | None) -> np.ndarray:
    """Derivative of v -> A(v) w along the sphere, from the closed-form derivatives of m_k and kappa.

    dm_k = phi(a_k) (P mu_k mu_k' P / sigma + sigma P) u and, for Gaussian alpha,
    dkappa_kl = -kappa_kl Delta_kl / tau * (h'_k mu_k - h'_l mu_l)' P u (the proof of the bound
    lemma); written with numpy loops, independent of clkit's finite differences and autograd.
    """
    mu, sigma, p = model.patterns.numpy(), model.sigma, model.probs.numpy()
    w = w.numpy() / np.linalg.norm(w.numpy())
    d, g = len(w), len(p)
    proj = np.eye(d) - np.outer(w, w)
    a = mu @ w / sigma
    phi = np.exp(-0.5 * a**2) / math.sqrt(2 * math.pi)
    cdf = np.array([0.5 * math.erfc(-ak / math.sqrt(2)) for ak in a])
    m = cdf[:, None] * mu + sigma * phi[:, None] * w
    jac_m = [phi[k] * (proj @ np.outer(mu[k], mu[k]) @ proj / sigma + sigma * proj) for k in range(g)]
    pre = mu @ w
    act, act_prime = np.maximum(pre, 0.0), (pre > 0).astype(float)
    b = np.zeros((d, d))
    for k in range(g):
        for l in range(g):
            diff = m[k] - m[l]
            c = diff @ w
            kappa = 1.0 if tau is None else math.exp(-((act[k] - act[l]) ** 2) / (2 * tau))
            term = kappa * np.outer(diff, w @ (jac_m[k] - jac_m[l])) + kappa * c * (jac_m[k] - jac_m[l])
            if tau is not None:
                grad_kappa = -kappa * (act[k] - act[l]) / tau * (proj @ (act_prime[k] * mu[k] - act_prime[l] * mu[l]))
                term = term + c * np.outer(diff, grad_kappa)
            b += 0.5 * p[k] * p[l] * term
    return b


@pytest.mark.parametrize("tau", [None, 1.5])
def test_local_roughness_matches_closed_form_derivative(tau: float | None):
    model = _pattern_model()
    w = _random_unit(4, _gen(11))
    rho, b = clkit.local_roughness_batch(lambda v: model.population_matrix(v, "relu", tau), w[None], step=1e-5)
    basis = clkit.tangent_bases(w[None])[0].numpy()
    b_exact = _analytic_b(model, w, tau) @ basis
    np.testing.assert_allclose(b[0].numpy(), b_exact, atol=1e-9)
    assert float(rho[0]) == pytest.approx(np.linalg.norm(b_exact, 2), rel=1e-8)


@pytest.mark.parametrize("tau", [None, 0.7])
def test_local_roughness_batch_matches_the_autograd_jacobian(tau: float | None):
    # the library route the central differences replace: torch.autograd.functional.jacobian
    model = _pattern_model()
    w = torch.randn(4, 4, dtype=DTYPE, generator=_gen(21))
    w = w / w.norm(dim=1, keepdim=True)
    rho, b = clkit.local_roughness_batch(lambda v: model.population_matrix(v, "relu", tau), w)
    for k in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: model.population_matrix(v / v.norm(), "relu", tau) @ w[k], w[k])
        b_autograd = jac @ clkit.tangent_bases(w[k][None])[0]
        torch.testing.assert_close(b[k], b_autograd, rtol=0, atol=1e-9)
        assert float(rho[k]) == pytest.approx(float(torch.linalg.matrix_norm(b_autograd, ord=2)), rel=1e-8)


def _own_flow_jacobian(model: clkit.LatentPatternModel, w: torch.Tensor, tau: float | None) -> torch.Tensor:
    """Autograd Jacobian of the flow P_v A(v) v (v normalised), written here, in tangent coordinates."""

    def flow(v: torch.Tensor) -> torch.Tensor:
        v = v / v.norm()
        g = model.population_matrix(v, "relu", tau) @ v
        return g - (g @ v) * v

    jac = torch.autograd.functional.jacobian(flow, w)
    basis = clkit.tangent_bases(w[None])[0]
    return basis.T @ jac @ basis


@pytest.mark.parametrize("tau", [None, 0.8])
def test_linearised_flow_matrix_matches_autograd_jacobian_of_the_flow(tau: float | None):
    model = _pattern_model()
    starts = torch.randn(12, 4, dtype=DTYPE, generator=_gen(22))
    points, residuals = clkit.find_critical_points(lambda v: model.population_matrix(v, "relu", tau), starts)
    assert len(points) >= 3
    for w in points:
        a = model.population_matrix(w, "relu", tau)
        _, b = clkit.local_roughness_batch(lambda v: model.population_matrix(v, "relu", tau), w[None])
        j_book = clkit.linearised_flow_matrix(a, b[0], w)
        torch.testing.assert_close(j_book, _own_flow_jacobian(model, w, tau), rtol=0, atol=1e-8)
        torch.testing.assert_close(clkit.flow_jacobian(lambda v: model.population_matrix(v, "relu", tau), w[None])[0],
                                   _own_flow_jacobian(model, w, tau), rtol=1e-10, atol=1e-12)


def test_find_critical_points_returns_zeros_of_the_flow_including_saddles():
    model = _pattern_model()
    starts = torch.randn(20, 4, dtype=DTYPE, generator=_gen(23))
    points, residuals = clkit.find_critical_points(lambda v: model.population_matrix(v, "relu", None), starts)
    assert len(points) >= 3 and float(residuals.max()) < 1e-11
    unstable = 0
    for w in points:
        a = model.population_matrix(w, "relu", None)
        g = a @ w
        assert float((g - (g @ w) * w).norm()) < 1e-10  # an eigenvector of A(w): a critical point
        unstable += float(torch.linalg.eigvals(_own_flow_jacobian(model, w, None)).real.max()) > 0
    assert unstable >= 1  # not only the attractors the dynamics would find
    assert torch.cdist(points, points).add(torch.eye(len(points), dtype=DTYPE)).min() > 1e-6  # deduplicated


def test_uniform_alpha_expected_covariance_matches_exact_enumeration():
    """x0 in {0, 2} (prob. 1/2), views x0 +- 1 (prob. 1/2 each), N = 2: enumerate every outcome."""
    import itertools

    total, count = 0.0, 0
    for x0 in itertools.product([0.0, 2.0], repeat=2):
        for e in itertools.product([-1.0, 1.0], repeat=4):
            x = torch.tensor([[x0[0] + e[0]], [x0[1] + e[1]]], dtype=DTYPE)
            x_pos = torch.tensor([[x0[0] + e[2]], [x0[1] + e[3]]], dtype=DTYPE)
            total += float(clkit.contrastive_covariance(x, x_pos, torch.ones(2, 2, dtype=DTYPE)))
            count += 1
    v_between, v_total = 1.0, 2.0  # V[x0] = 1, V[x] = 1 + 1
    assert total / count == pytest.approx(float(clkit.uniform_alpha_expected_covariance(v_between, v_total, 2)), abs=1e-14)


def test_uniform_alpha_expected_covariance_accepts_sympy_and_rejects_bad_n():
    import sympy as sp

    b, v, n = sp.symbols("b v n", positive=True)
    assert sp.simplify(clkit.uniform_alpha_expected_covariance(b, v, n) - (b - v / n)) == 0
    with pytest.raises(ValueError, match="n"):
        clkit.uniform_alpha_expected_covariance(1.0, 2.0, 0)


def test_info_nce_alpha_from_distances_sympy_and_torch_agree():
    import sympy as sp

    gen = _gen(24)
    f, f_pos = torch.randn(4, 3, dtype=DTYPE, generator=gen), torch.randn(4, 3, dtype=DTYPE, generator=gen)
    numeric = clkit.info_nce_alpha(f, f_pos, 0.7, 0.5)
    d_pos = [sp.Rational(round(0.5 * float((f[i] - f_pos[i]).pow(2).sum()) * 10**12), 10**12) for i in range(4)]
    d_neg = sp.Matrix(4, 4, lambda i, j: sp.Rational(round(0.5 * float((f[i] - f[j]).pow(2).sum()) * 10**12), 10**12))
    symbolic = clkit.info_nce_alpha_from_distances(d_pos, d_neg, sp.Rational(7, 10), sp.Rational(1, 2))
    np.testing.assert_allclose(np.array(symbolic.evalf(), dtype=float), numeric.numpy(), rtol=1e-9)


def test_bound_terms_sum_to_bound_and_the_tau_term_is_zero_for_uniform_alpha():
    model = _pattern_model()
    w = torch.randn(3, 4, dtype=DTYPE, generator=_gen(25))
    for k in range(3):
        gate, kernel = model.roughness_bound_terms(w[k], "relu", 0.9).tolist()
        assert gate + kernel == pytest.approx(float(model.roughness_bound(w[k], "relu", 0.9)), rel=1e-14)
        assert kernel > 0 and float(model.roughness_bound_terms(w[k], "relu", None)[1]) == 0.0


@pytest.mark.parametrize("tau", [None, 0.5, 2.0])
def test_roughness_bound_holds_at_random_points(tau: float | None):
    model = _pattern_model()
    gen = _gen(12)
    for _ in range(10):
        w = _random_unit(4, gen)
        rho, _ = clkit.local_roughness_batch(lambda v: model.population_matrix(v, "relu", tau), w[None])
        assert float(rho[0]) <= float(model.roughness_bound(w, "relu", tau)) + 1e-9


def test_linear_activation_with_uniform_alpha_has_zero_roughness():
    model = _pattern_model()
    w = _random_unit(4, _gen(13))
    rho, _ = clkit.local_roughness_batch(lambda v: model.population_matrix(v, "linear", None), w[None])
    assert float(rho[0]) < 1e-10
    assert float(model.roughness_bound(w, "linear", None)) == 0.0


def test_eigengap_of_a_diagonal_matrix():
    a = torch.diag(torch.tensor([3.0, 1.0, 2.0], dtype=DTYPE))
    lam, gap = clkit.eigengap(a, torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE))
    assert (lam, gap) == pytest.approx((3.0, 1.0))
    lam, gap = clkit.eigengap(a, torch.tensor([0.0, 1.0, 0.0], dtype=DTYPE))
    assert (lam, gap) == pytest.approx((1.0, -2.0))


def test_tangent_bases_are_orthonormal_and_orthogonal_to_w():
    w = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 3.0, 0.0]], dtype=DTYPE)
    for k, e in enumerate(clkit.tangent_bases(w)):
        torch.testing.assert_close(e.T @ e, torch.eye(3, dtype=DTYPE))
        assert float((e.T @ w[k]).abs().max()) < 1e-14


def test_alpha_cl_dynamics_with_linear_activation_reaches_top_eigenvector():
    model = _pattern_model()
    w0 = torch.randn(6, 4, dtype=DTYPE, generator=_gen(14))
    w = clkit.alpha_cl_dynamics(lambda v: model.population_matrix(v, "linear", None), w0, lr=0.5, steps=500)
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
        clkit.one_layer_matrix(x, x, w, torch.ones(3, 3, dtype=DTYPE), "tanh")
    with pytest.raises(ValueError, match="w"):
        clkit.one_layer_matrix(x, x, torch.zeros(4, dtype=DTYPE), torch.ones(3, 3, dtype=DTYPE))
    with pytest.raises(ValueError, match="tau"):
        clkit.gaussian_alpha(x, w, 0.0)
    with pytest.raises(ValueError, match="eps"):
        clkit.info_nce_distance(x, x, 1.0, eps=-1.0)
    with pytest.raises(ValueError, match="probs"):
        clkit.LatentPatternModel(model.patterns, torch.tensor([0.5, 0.5, 0.5], dtype=DTYPE), 0.5)
    with pytest.raises(ValueError, match="sigma"):
        clkit.LatentPatternModel(model.patterns, model.probs, 0.0)
    with pytest.raises(ValueError, match="steps"):
        clkit.alpha_cl_dynamics(lambda v: model.population_matrix(v), w[None], lr=1.0, steps=0)
    with pytest.raises(ValueError, match="step"):
        clkit.local_roughness_batch(lambda v: model.population_matrix(v), w[None], step=0.0)
    with pytest.raises(ValueError, match="n"):
        model.sample(0, _gen())


def test_contrastive_covariance_of_a_batch_equals_one_batch_at_a_time():
    gen = _gen(26)
    x, x_pos = torch.randn(3, 7, 4, dtype=DTYPE, generator=gen), torch.randn(3, 7, 4, dtype=DTYPE, generator=gen)
    alpha = torch.rand(3, 7, 7, dtype=DTYPE, generator=gen)
    batched = clkit.contrastive_covariance(x, x_pos, alpha)
    shared = clkit.contrastive_covariance(x, x_pos, alpha[0])
    w = _random_unit(4, gen)
    gated = clkit.one_layer_matrix(x, x_pos, w, alpha)
    for b in range(3):
        torch.testing.assert_close(batched[b], clkit.contrastive_covariance(x[b], x_pos[b], alpha[b]))
        torch.testing.assert_close(shared[b], clkit.contrastive_covariance(x[b], x_pos[b], alpha[0]))
        torch.testing.assert_close(gated[b], clkit.one_layer_matrix(x[b], x_pos[b], w, alpha[b]))
    torch.testing.assert_close(clkit.gaussian_alpha(x, w, 0.6)[1], clkit.gaussian_alpha(x[1], w, 0.6))
    with pytest.raises(ValueError, match="alpha"):
        clkit.contrastive_covariance(x, x_pos, torch.rand(2, 7, 7, dtype=DTYPE))


def test_new_functions_reject_bad_input_naming_the_argument():
    model = _pattern_model()
    fn = lambda v: model.population_matrix(v, "relu", None)  # noqa: E731
    starts = torch.randn(3, 4, dtype=DTYPE, generator=_gen(27))
    with pytest.raises(ValueError, match="tol"):
        clkit.find_critical_points(fn, starts, tol=0.0)
    with pytest.raises(ValueError, match="starts"):
        clkit.find_critical_points(fn, starts[0])
    a = model.population_matrix(starts[0], "relu", None)
    with pytest.raises(ValueError, match="b"):
        clkit.linearised_flow_matrix(a, torch.zeros(4, 4, dtype=DTYPE), starts[0])
    with pytest.raises(ValueError, match="step"):
        clkit.local_roughness_batch(fn, starts, step=-1.0)
    with pytest.raises(ValueError, match="w"):
        clkit.tangent_bases(torch.zeros(2, 4, dtype=DTYPE))
    with pytest.raises(ValueError, match="tau"):
        clkit.info_nce_alpha_from_distances(torch.zeros(3, dtype=DTYPE), torch.zeros(3, 3, dtype=DTYPE), 0.0)
    with pytest.raises(ValueError, match="d_neg"):
        clkit.info_nce_alpha_from_distances(torch.zeros(3, dtype=DTYPE), torch.zeros(2, 2, dtype=DTYPE), 1.0)


@pytest.mark.parametrize("activation, tau", [("relu", None), ("relu", 0.7), ("linear", 1.5)])
def test_batched_roughness_terms_match_a_loop_over_pattern_pairs(activation: str, tau: float | None):
    # the bound's two sums written term by term, from gated_moments and kernel at one w at a time
    model = _pattern_model()
    w = torch.randn(6, 4, dtype=DTYPE, generator=_gen(31))
    terms = model.roughness_bound_terms(w, activation, tau)
    assert terms.shape == (6, 2)
    torch.testing.assert_close(model.roughness_bound(w, activation, tau), terms.sum(1), rtol=0, atol=0)
    relu = activation == "relu"
    for k in range(6):
        u = w[k] / w[k].norm()
        m, _ = model.gated_moments(u, activation)
        kappa = model.kernel(u, activation, tau)
        gate = kern = 0.0
        for a in range(3):
            for b in range(3):
                mu_a, mu_b = model.patterns[a], model.patterns[b]
                weight = float(model.probs[a] * model.probs[b] * kappa[a, b])
                c = abs(float((m[a] - m[b]) @ u))
                proj_a = mu_a - (mu_a @ u) * u
                gamma = (math.exp(-0.5 * float(mu_a @ u / model.sigma) ** 2) / math.sqrt(2 * math.pi)
                         * (float(proj_a @ proj_a) / model.sigma + model.sigma)) if relu else 0.0
                gate += weight * c * gamma
                if tau is not None:
                    h = (lambda t: max(t, 0.0)) if relu else (lambda t: t)
                    hp = (lambda t: float(t > 0)) if relu else (lambda t: 1.0)
                    pa, pb = float(mu_a @ u), float(mu_b @ u)
                    proj_b = mu_b - pb * u
                    delta = abs(h(pa) - h(pb))
                    dk = float((hp(pa) * proj_a - hp(pb) * proj_b).norm())
                    kern += weight * c * delta / (2 * tau) * dk * float((m[a] - m[b]).norm())
        assert float(terms[k, 0]) == pytest.approx(gate, rel=1e-12, abs=1e-15)
        assert float(terms[k, 1]) == pytest.approx(kern, rel=1e-12, abs=1e-15)
        assert float(model.roughness_bound(w[k], activation, tau)) == pytest.approx(gate + kern, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_batched_gated_moments_and_kernel_match_one_row_at_a_time(activation: str):
    model = _pattern_model()
    w = torch.randn(5, 4, dtype=DTYPE, generator=_gen(32))
    m, cov = model.gated_moments(w, activation)
    kappa = model.kernel(w, activation, 0.8)
    assert m.shape == (5, 3, 4) and cov.shape == (5, 3, 4, 4) and kappa.shape == (5, 3, 3)
    for k in range(5):
        m_k, cov_k = model.gated_moments(w[k], activation)
        torch.testing.assert_close(m[k], m_k, rtol=0, atol=1e-15)
        torch.testing.assert_close(cov[k], cov_k, rtol=0, atol=1e-15)
        torch.testing.assert_close(kappa[k], model.kernel(w[k], activation, 0.8), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="w"):
        model.gated_moments(torch.zeros(2, 4, dtype=DTYPE))


def test_gate_jacobians_match_autograd_and_uniform_b_matches_the_numpy_derivative():
    model = _pattern_model()
    w = torch.randn(5, 4, dtype=DTYPE, generator=_gen(34))
    w = w / w.norm(dim=1, keepdim=True)
    jk = model.gate_jacobians(w)
    b = model.uniform_roughness_matrix(w)
    assert jk.shape == (5, 3, 4, 4) and b.shape == (5, 4, 4)
    for k in range(5):
        basis = clkit.tangent_bases(w[k][None])[0]
        jac = torch.autograd.functional.jacobian(lambda v: model.gated_means(v / v.norm()), w[k])  # (G, d, d)
        torch.testing.assert_close(jk[k] @ basis, jac @ basis, rtol=0, atol=1e-12)
        assert float(torch.linalg.eigvalsh(jk[k]).min()) > -1e-14  # positive semi-definite
        np.testing.assert_allclose((b[k] @ basis).numpy(), _analytic_b(model, w[k], None) @ basis.numpy(), atol=1e-12)
        torch.testing.assert_close(b[k], model.uniform_roughness_matrix(w[k]))
    assert float(model.gate_jacobians(w, "linear").abs().max()) == 0.0


# --- relu_gaussian_moments, pattern_population_matrix (chapter 07) -----------------------------


def test_relu_gaussian_moments_match_scipy_quadrature():
    from scipy import integrate, stats

    means = torch.tensor([-2.0, -0.3, 0.0, 0.7, 3.0], dtype=DTYPE)
    stds = torch.tensor([0.5, 1.0, 2.0, 0.8, 1.5], dtype=DTYPE)
    first, second = clkit.relu_gaussian_moments(means, stds)
    for a, s, m1, m2 in zip(means.tolist(), stds.tolist(), first.tolist(), second.tolist()):
        q1 = integrate.quad(lambda u: u * stats.norm.pdf(u, a, s), 0, np.inf, epsabs=1e-13)[0]
        q2 = integrate.quad(lambda u: u * u * stats.norm.pdf(u, a, s), 0, np.inf, epsabs=1e-13)[0]
        assert m1 == pytest.approx(q1, rel=1e-9, abs=1e-12)
        assert m2 == pytest.approx(q2, rel=1e-9, abs=1e-12)


def test_relu_gaussian_moments_left_tail_match_mpmath():
    # the direct formulas cancel for z < 0 (z = -8: m1 off by 120 %, m2 < 0; z = -25: m1 600x)
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    cases = [(-8.0, 1.0), (-10.0, 1.0), (-25.0, 1.0), (-5.0, 0.4), (-37.0, 1.0), (-9.1, 2.0)]
    means = torch.tensor([a * s for a, s in cases], dtype=DTYPE)
    stds = torch.tensor([s for _, s in cases], dtype=DTYPE)
    first, second = clkit.relu_gaussian_moments(means, stds)
    for (z, s), m1, m2 in zip(cases, first.tolist(), second.tolist()):
        # the integrals themselves, not the closed form: int_0^inf u^n N(u; a, s^2) du with
        # u = s y / x (x = -z > 0) is s^n phi(x) x^-(n+1) int_0^inf y^n exp(-y - y^2/2x^2) dy
        x = mp.mpf(-z)
        q1, q2 = (s**n * mp.npdf(x) / x ** (n + 1)
                  * mp.quad(lambda y: y**n * mp.exp(-y - y * y / (2 * x * x)), [0, 1, 10, mp.inf])
                  for n in (1, 2))
        assert m1 == pytest.approx(float(q1), rel=1e-11, abs=0)
        assert m2 == pytest.approx(float(q2), rel=1e-11, abs=0)


def test_relu_gaussian_moments_variance_non_negative_every_z_and_dtype():
    for dtype in (torch.float64, torch.float32):
        z = torch.linspace(-60.0, 60.0, 24_001, dtype=dtype)
        first, second = clkit.relu_gaussian_moments(z, 1.0)
        assert bool((first >= 0).all()) and bool((second >= first * first).all())
        assert first.dtype == dtype and second.dtype == dtype
    # the right tail: m1 -> a, m2 - m1^2 -> s^2
    first, second = clkit.relu_gaussian_moments(torch.tensor([12.0], dtype=DTYPE), 1.0)
    assert float(first) == pytest.approx(12.0, rel=1e-15)
    assert float(second - first * first) == pytest.approx(1.0, rel=1e-12)


def test_relu_gaussian_moments_monte_carlo_and_float_std():
    gen = _gen(3)
    u = 0.4 + 1.3 * torch.randn(400_000, dtype=DTYPE, generator=gen)
    first, second = clkit.relu_gaussian_moments(torch.tensor(0.4, dtype=DTYPE), 1.3)
    r = torch.relu(u)
    assert float(first) == pytest.approx(float(r.mean()), abs=5 * float(r.std()) / 632)
    assert float(second) == pytest.approx(float(r.pow(2).mean()), abs=5 * float(r.pow(2).std()) / 632)


def test_relu_gaussian_moments_bad_input():
    with pytest.raises(ValueError, match="std"):
        clkit.relu_gaussian_moments(torch.zeros(2, dtype=DTYPE), 0.0)
    with pytest.raises(ValueError, match="mean"):
        clkit.relu_gaussian_moments(torch.tensor([float("nan")], dtype=DTYPE), 1.0)
    with pytest.raises(ValueError, match="mean"):
        clkit.relu_gaussian_moments([0.0], 1.0)


def test_pattern_population_matrix_matches_latent_pattern_model():
    model = _pattern_model()
    w = torch.randn(3, 4, dtype=DTYPE, generator=_gen(5))
    for tau in (None, 0.7):
        means = model.gated_means(w)
        kernel = None if tau is None else model.kernel(w, tau=tau)
        got = clkit.pattern_population_matrix(means, model.probs, kernel)
        expected = model.population_matrix(w, tau=tau)
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_pattern_population_matrix_pairwise_loop_with_nonsymmetric_kernel():
    gen = _gen(6)
    means = torch.randn(5, 3, dtype=DTYPE, generator=gen)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=DTYPE)
    kernel = torch.rand(5, 5, dtype=DTYPE, generator=gen)
    expected = np.zeros((3, 3))
    m, p, k = means.numpy(), probs.numpy(), kernel.numpy()
    for i in range(5):
        for j in range(5):
            diff = m[i] - m[j]
            expected += 0.5 * p[i] * p[j] * k[i, j] * np.outer(diff, diff)
    got = clkit.pattern_population_matrix(means, probs, kernel).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    ones = clkit.pattern_population_matrix(means, probs, torch.ones(5, 5, dtype=DTYPE))
    np.testing.assert_allclose(clkit.pattern_population_matrix(means, probs).numpy(),
                               ones.numpy(), rtol=1e-12, atol=1e-14)
    cov = np.cov(m.T, aweights=p, bias=True)
    np.testing.assert_allclose(ones.numpy(), cov, rtol=1e-12, atol=1e-14)


def test_pattern_population_matrix_bad_input():
    means = torch.zeros(4, 2, dtype=DTYPE)
    with pytest.raises(ValueError, match="probs"):
        clkit.pattern_population_matrix(means, torch.full((3,), 1 / 3, dtype=DTYPE))
    with pytest.raises(ValueError, match="probs"):
        clkit.pattern_population_matrix(means, torch.full((4,), 0.3, dtype=DTYPE))
    with pytest.raises(ValueError, match="kernel"):
        clkit.pattern_population_matrix(means, torch.full((4,), 0.25, dtype=DTYPE),
                                        torch.ones(3, 3, dtype=DTYPE))
    with pytest.raises(ValueError, match="means"):
        clkit.pattern_population_matrix(torch.zeros(4, dtype=DTYPE), torch.ones(4, dtype=DTYPE))
