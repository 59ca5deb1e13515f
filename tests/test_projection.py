"""clkit.projection (Gui, Ma & Zhong 2023) against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import clkit
from clkit import projection

DTYPE = torch.float64


def _mu(values) -> torch.Tensor:
    return torch.tensor(values, dtype=DTYPE)


def _random(shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=DTYPE, generator=clkit.make_generator(seed, "cpu"))


# --- tau*, expansion measure, projector family ---------------------------------------------------


def test_tau_star_matches_the_poster_formula_for_floats_and_tensors():
    sigma2, rho = 0.7, 2.5
    expected = 2 * rho / ((1 + sigma2 + rho) * math.log(1 + 2 * sigma2))
    assert clkit.tau_star(sigma2, rho) == pytest.approx(expected, rel=1e-15)
    batch = clkit.tau_star(torch.tensor([0.7, 1.0], dtype=DTYPE), 2.5)
    assert batch.shape == (2,) and float(batch[0]) == pytest.approx(expected, rel=1e-15)


def test_expansion_measure_is_one_over_p_at_identity_and_one_for_aligned_rank_one():
    mu = _mu([1.0, -2.0, 0.5])
    assert float(clkit.expansion_measure(torch.eye(3, dtype=DTYPE), mu)) == pytest.approx(1 / 3, rel=1e-15)
    rank_one = torch.outer(_mu([0.3, 1.0]), mu)
    assert float(clkit.expansion_measure(rank_one, mu)) == pytest.approx(1.0, rel=1e-14)
    values = clkit.expansion_measure(_random((50, 2, 3)), mu)
    assert values.shape == (50,) and bool(((values >= 0) & (values <= 1)).all())


def test_projector_family_has_the_closed_form_expansion_measure():
    mu = _mu([1.0, 0.5, -0.5, 2.0])
    for eta in (-0.7, 0.0, 2.0):
        t = float(clkit.expansion_measure(clkit.projector_family(mu, eta), mu))
        assert t == pytest.approx((1 + eta) ** 2 / (3 + (1 + eta) ** 2), rel=1e-13)


# --- the exact population loss --------------------------------------------------------------------


def test_population_loss_matches_monte_carlo_of_its_definition():
    """The loss from sampled h, h+, h- (the definition) against the closed form, 4 standard errors."""
    gen = clkit.make_generator(3, "cpu")
    mu, sigma2, tau = _mu([1.0, 0.0, 0.5]), 0.8, 0.7
    W = _random((2, 3), seed=1)
    n = 400_000
    mixture = clkit.GaussianMixture.symmetric_two_component(mu)
    h, _ = mixture.sample(n, gen)
    h_neg, _ = mixture.sample(n, gen)
    noise = lambda: math.sqrt(sigma2) * torch.randn(n, 3, dtype=DTYPE, generator=gen)
    z1, z2, zn = (h + noise()) @ W.T, (h + noise()) @ W.T, (h_neg + noise()) @ W.T
    s_hat = float(z1.pow(2).sum(1).mean())
    positive = (z1 - z2).pow(2).sum(1) / (2 * tau * s_hat)
    negative = torch.exp(-(z1 - zn).pow(2).sum(1) / (2 * tau * s_hat))
    loss_mc = float(positive.mean() + torch.log(negative.mean()))
    # delta method: the loss is linear in the two sample means to first order
    influence = positive + negative / negative.mean()
    se = float(influence.std()) / math.sqrt(n)
    assert abs(loss_mc - float(clkit.population_loss(W, mu, sigma2, tau))) < 4 * se


def test_population_loss_depends_on_W_only_through_W_transpose_W_and_is_scale_invariant():
    mu, W = _mu([0.4, 1.0, -1.0]), _random((3, 3), seed=2)
    q, _ = torch.linalg.qr(_random((3, 3), seed=3))
    base = clkit.population_loss(W, mu, 0.5, 0.9)
    assert float(clkit.population_loss(q @ W, mu, 0.5, 0.9)) == pytest.approx(float(base), abs=1e-13)
    assert float(clkit.population_loss(-4.2 * W, mu, 0.5, 0.9)) == pytest.approx(float(base), abs=1e-13)


def test_population_loss_batched_equals_one_matrix_at_a_time():
    mu, Ws = _mu([1.0, 2.0]), _random((5, 3, 2), seed=4)
    taus = torch.linspace(0.2, 2.0, 5, dtype=DTYPE)
    batched = clkit.population_loss(Ws, mu, 0.3, taus)
    looped = torch.stack([clkit.population_loss(W, mu, 0.3, float(t)) for W, t in zip(Ws, taus)])
    assert torch.allclose(batched, looped, rtol=0, atol=1e-14)


def test_population_loss_gradient_matches_finite_differences():
    mu, W = _mu([1.0, -0.5, 0.2]), _random((3, 3), seed=5).requires_grad_(True)
    (grad,) = torch.autograd.grad(clkit.population_loss(W, mu, 0.6, 0.8), W)
    step = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        e = torch.zeros_like(W)
        e[i, j] = step
        fd = (clkit.population_loss(W.detach() + e, mu, 0.6, 0.8) - clkit.population_loss(W.detach() - e, mu, 0.6, 0.8)) / (2 * step)
        assert float(grad[i, j]) == pytest.approx(float(fd), abs=1e-8)


# --- the first-order surrogate ----------------------------------------------------------------------


def test_first_order_loss_is_the_first_order_part_of_the_population_loss():
    mu, W, sigma2 = _mu([1.0, 0.3]), _random((2, 2), seed=6), 0.4
    M = W.T @ W
    s = (1 + sigma2) * M.trace() + mu @ M @ mu
    v = 2 * (1 + sigma2)
    K0 = v**2 * (M @ M).trace() + 4 * v * (mu @ M @ M @ mu)
    tau = 1e4
    c = 1 / (2 * tau * s)
    gap = clkit.population_loss(W, mu, sigma2, tau) - clkit.first_order_loss(W, mu, sigma2, tau)
    assert float(gap / (c**2 * K0)) == pytest.approx(1.0, abs=1e-3)


def test_first_order_loss_is_its_profile_at_the_expansion_measure():
    mu, Ws = _mu([0.5, 1.5, 0.0]), _random((20, 4, 3), seed=7)
    x = clkit.expansion_measure(Ws, mu) * mu.pow(2).sum()
    assert torch.allclose(clkit.first_order_loss(Ws, mu, 1.3, 0.4), clkit.first_order_loss_profile(x, 1.3, 0.4), atol=1e-14)


@pytest.mark.parametrize("sigma2,rho", [(0.5, 2.0), (2.0, 1.0), (0.1, 8.0)])
def test_first_order_optimum_matches_a_dense_grid_search_on_both_sides_of_tau_star(sigma2, rho):
    xs = torch.linspace(0, rho, 20_001, dtype=DTYPE)
    for ratio in (0.3, 0.8, 1.0, 1.2, 3.0):
        tau = ratio * clkit.tau_star(sigma2, rho)
        grid_min = float(xs[torch.argmin(clkit.first_order_loss_profile(xs, sigma2, tau))])
        assert clkit.first_order_optimum(sigma2, tau, rho) == pytest.approx(grid_min, abs=2 * rho / 20_000)
        assert (clkit.first_order_optimum(sigma2, tau, rho) == rho) == (ratio >= 1.0)


def test_first_order_optimum_is_mu_norm2_when_the_derivative_never_changes_sign():
    """tau * log(1 + 2 sigma2) >= 2: u(x) < 2/tau <= log(1 + 2 sigma2), so l~ decreases on [0, |mu|^2]."""
    sigma2, tau, rho = 2.0, 5.0, 1.0
    assert tau * math.log1p(2 * sigma2) >= 2
    xs = torch.linspace(0, rho, 1001, dtype=DTYPE)
    assert bool((clkit.first_order_loss_profile(xs, sigma2, tau).diff() < 0).all())
    assert clkit.first_order_optimum(sigma2, tau, rho) == rho
    batch = clkit.first_order_optimum(torch.tensor([0.5, 2.0], dtype=DTYPE), torch.tensor([0.1, 5.0], dtype=DTYPE), rho)
    assert float(batch[1]) == rho and float(batch[0]) < rho


def test_minimize_over_projector_finds_rank_one_aligned_minimiser_in_expansion_regime():
    mu = _mu([1.0, 1.0, 0.0])
    tau = 2.0 * clkit.tau_star(0.5, 2.0)
    W_hat = clkit.minimize_over_projector("first_order", mu, 0.5, tau, _random((3, 3), seed=8))
    sv = torch.linalg.svdvals(W_hat)
    assert float(sv[1] / sv[0]) < 1e-5
    assert float(clkit.expansion_measure(W_hat, mu)) == pytest.approx(1.0, abs=1e-9)


def test_minimize_over_projector_is_deterministic():
    mu, W0 = _mu([1.0, 0.0, 1.0]), _random((3, 3), seed=9)
    a = clkit.minimize_over_projector("first_order", mu, 1.0, 0.5, W0)
    b = clkit.minimize_over_projector("first_order", mu, 1.0, 0.5, W0)
    assert torch.equal(a, b)


# --- downstream: logistic regression, exact error, max margin ---------------------------------------


def test_ridge_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    gen = clkit.make_generator(10, "cpu")
    z, labels = clkit.GaussianMixture.symmetric_two_component(_mu([0.8, 0.0, 0.3])).sample(500, gen)
    y = 2 * labels.to(DTYPE) - 1
    lam = 0.05
    gamma, beta = clkit.ridge_logistic_regression(z, y, lam)
    # scikit-learn minimises C * sum(log-loss) + ||beta||^2 / 2, i.e. lambda = 1 / (2 C n)
    model = LogisticRegression(C=1 / (2 * lam * 500), tol=1e-12, max_iter=10_000).fit(z.numpy(), y.numpy())
    assert np.allclose(beta.numpy(), model.coef_[0], atol=1e-6)
    assert float(gamma) == pytest.approx(float(model.intercept_[0]), abs=1e-6)


def test_linear_classifier_error_matches_monte_carlo_and_is_bayes_at_the_optimum():
    mu = _mu([1.2, 0.0, 0.0])
    W = clkit.projector_family(mu, -0.4)
    beta, gamma = _mu([0.5, 0.4, -0.3]), -0.2
    gen = clkit.make_generator(11, "cpu")
    h, labels = clkit.GaussianMixture.symmetric_two_component(mu).sample(400_000, gen)
    y = 2 * labels.to(DTYPE) - 1
    wrong = (y * (gamma + (h @ W.T) @ beta) < 0).to(DTYPE)
    est = clkit.monte_carlo_mean(wrong)
    assert abs(est.mean - float(clkit.linear_classifier_error(gamma, beta, mu, W))) < 4 * est.stderr
    bayes = 0.5 * math.erfc(1.2 / math.sqrt(2))
    best = clkit.linear_classifier_error(0.0, torch.linalg.solve(W.T, mu), mu, W)
    assert float(best) == pytest.approx(bayes, rel=1e-12)


def test_max_margin_classifier_matches_a_generic_constrained_solver():
    gen = clkit.make_generator(12, "cpu")
    z, labels = clkit.GaussianMixture.symmetric_two_component(_mu([1.5, 0.0, 0.0, 0.0, 0.0])).sample(12, gen)
    y = 2 * labels.to(DTYPE) - 1
    beta, kappa = clkit.max_margin_classifier(z, y)
    G = (y.unsqueeze(1) * z).numpy()
    res = minimize(lambda w: w @ w, np.ones(5), jac=lambda w: 2 * w, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda w: G @ w - 1, "jac": lambda w: G}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success
    assert kappa == pytest.approx(1 / np.linalg.norm(res.x), rel=1e-6)
    assert np.allclose(beta.numpy(), res.x / np.linalg.norm(res.x), atol=1e-5)
    assert float((G @ beta.numpy()).min()) == pytest.approx(kappa, rel=1e-8)


def test_max_margin_classifier_reports_non_separable_data():
    z = _mu([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.5]])
    y = _mu([1.0, -1.0, 1.0])
    beta, kappa = clkit.max_margin_classifier(z, y)
    assert beta is None and kappa == 0.0



# --- the exact loss's threshold tau_e ------------------------------------------------------------------


def _slope_by_autograd(tau: float, sigma2: float, rho: float, p: int = 4, T: float = 1e-10) -> float:
    """dC/dT along M(T) = e1 e1^T + T/(p-1) P_perp, by autograd through population_loss at small T."""
    mu = torch.zeros(p, dtype=DTYPE)
    mu[0] = math.sqrt(rho)
    T_t = torch.tensor(T, dtype=DTYPE, requires_grad=True)
    diag = torch.cat([torch.ones(1, dtype=DTYPE), torch.sqrt(T_t / (p - 1)).expand(p - 1)])
    (grad,) = torch.autograd.grad(clkit.population_loss(torch.diag(diag), mu, sigma2, tau), T_t)
    return float(grad)


@pytest.mark.parametrize(
    "sigma2,rho",
    [(1.0, 1.0), (0.5, 4.0), (0.05, 0.3), (0.1, 8.0), (2.0, 0.5), (4.0, 16.0), (0.3, 2.0), (1.5, 1e-1),
     (0.02, 1.0), (3.0, 64.0), (0.7, 0.25), (0.2, 12.0)],
)
def test_exact_threshold_matches_a_bisection_on_autograd_of_the_population_loss(sigma2, rho):
    """Independent route: the sign of autograd's dC/dT along the isotropic family, bisected in tau."""
    lo, hi = clkit.tau_star(sigma2, rho), clkit.tau_star(sigma2, rho)
    while _slope_by_autograd(lo, sigma2, rho) > 0:
        lo /= 2
    while _slope_by_autograd(hi, sigma2, rho) <= 0:
        hi *= 2
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _slope_by_autograd(mid, sigma2, rho) <= 0 else (lo, mid)
    assert clkit.exact_threshold(sigma2, rho) == pytest.approx(math.sqrt(lo * hi), rel=1e-6)


def test_rank_one_derivative_does_not_depend_on_p_and_matches_autograd():
    for p in (2, 3, 7):
        assert clkit.rank_one_derivative(3.0, 1.0, 1.0) == pytest.approx(_slope_by_autograd(3.0, 1.0, 1.0, p=p),
                                                                       rel=1e-6)


def test_exact_threshold_is_where_the_full_matrix_minimiser_becomes_rank_one():
    sigma2, rho = 1.0, 1.0
    mu = _mu([1.0, 0.0, 0.0])
    tau_e = clkit.exact_threshold(sigma2, rho)
    W0 = _random((3, 3), seed=20)
    below = clkit.minimize_over_projector("population", mu, sigma2, 0.97 * tau_e, W0, gtol=1e-9)
    above = clkit.minimize_over_projector("population", mu, sigma2, 1.03 * tau_e, W0, gtol=1e-9)
    assert 1 - float(clkit.expansion_measure(below, mu)) > 1e-3
    assert 1 - float(clkit.expansion_measure(above, mu)) < 1e-7


def test_exact_threshold_ratio_tends_to_its_small_sigma_limit():
    for rho in (1.0, 4.0):
        ratio = clkit.exact_threshold(1e-5, rho) / clkit.tau_star(1e-5, rho)
        assert ratio == pytest.approx(1 + 4 / rho + 2 / rho**2, rel=1e-3)


def test_rank_one_derivative_accepts_sympy_symbols():
    import sympy

    tau, s2, rho = sympy.symbols("tau sigma2 rho", positive=True)
    expr = clkit.rank_one_derivative(tau, s2, rho)
    value = float(expr.subs({tau: 2.5, s2: 0.7, rho: 1.3}))
    assert value == pytest.approx(clkit.rank_one_derivative(2.5, 0.7, 1.3), rel=1e-12)
    assert float(clkit.tau_star(s2, rho).subs({s2: 0.7, rho: 1.3})) == pytest.approx(clkit.tau_star(0.7, 1.3))


def test_minimize_over_projector_converges_where_lbfgsb_alone_loses_precision():
    """sigma2 = 1e-4: L-BFGS-B stops for precision loss; the Newton polish must reach x* to 1e-6 relative."""
    mu = _mu([1.0, 1.0, 0.0])
    W_hat = clkit.minimize_over_projector("first_order", mu, 1e-4, 1.0, _random((3, 3), seed=1), gtol=1e-12)
    x_hat = float(clkit.expansion_measure(W_hat, mu)) * 2
    assert x_hat == pytest.approx(clkit.first_order_optimum(1e-4, 1.0, 2.0), rel=1e-6)
    assert float(W_hat.norm()) == pytest.approx(1.0, rel=1e-12)


# --- projector parameter, intercept-free logistic regression, max-margin limits -----------------------------


def test_projector_parameter_inverts_the_expansion_measure_of_the_family():
    mu = _mu([0.3, 1.0, -0.5, 0.2])
    for eta in (-0.6, 0.0, 2.5):
        t = float(clkit.expansion_measure(clkit.projector_family(mu, eta), mu))
        assert clkit.projector_parameter(t, 4) == pytest.approx(eta, abs=1e-10)
    assert clkit.projector_parameter(1.0, 4) == math.inf


def test_ridge_logistic_regression_without_intercept_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    gen = clkit.make_generator(13, "cpu")
    z, labels = clkit.GaussianMixture.symmetric_two_component(_mu([0.8, 0.0, 0.3])).sample(400, gen)
    y = 2 * labels.to(DTYPE) - 1
    lam = 0.05
    gamma, beta = clkit.ridge_logistic_regression(z, y, lam, intercept=False)
    model = LogisticRegression(C=1 / (2 * lam * 400), tol=1e-12, max_iter=10_000, fit_intercept=False)
    model.fit(z.numpy(), y.numpy())
    assert float(gamma) == 0.0
    assert np.allclose(beta.numpy(), model.coef_[0], atol=1e-6)


def _positive_part_by_quadrature(a: float, b: float) -> float:
    from scipy.integrate import quad

    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return quad(lambda z: max(a + b * z, 0.0) ** 2 * density(z), -a / b, np.inf, epsabs=1e-13)[0]


def test_separability_threshold_matches_quadrature_and_a_grid():
    for rho in (0.0, 1.0, 2.0):
        m = math.sqrt(rho)
        ts = np.linspace(0, 6, 3001)
        grid = min((1 + t * t) * _positive_part_by_quadrature(-t * m / math.sqrt(1 + t * t), 1.0) for t in ts)
        assert clkit.separability_threshold(rho) == pytest.approx(1 / grid, rel=1e-5)
    assert clkit.separability_threshold(0.0) == pytest.approx(2.0, rel=1e-14)


def test_max_margin_asymptotics_match_a_brute_force_maximisation():
    """Independent route: F by quadrature, kappa(alpha, r) by bisection, the constraint boundary on a grid."""
    delta, rho, eta = 1.0, 2.0, 1.0
    m = math.sqrt(rho)
    best = (-1.0, None)
    for theta in np.linspace(1e-3, math.pi / 2 - 1e-3, 400):
        alpha, r = (1 + eta) * math.cos(theta), math.sin(theta)
        b = math.hypot(alpha, r)
        lo, hi = 0.0, 10.0
        if delta * _positive_part_by_quadrature(-alpha * m, b) >= r * r:
            continue
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if delta * _positive_part_by_quadrature(mid - alpha * m, b) < r * r else (lo, mid)
        if lo > best[0]:
            best = (lo, (alpha, r))
    limit = clkit.max_margin_asymptotics(delta, rho, eta)
    assert limit.kappa == pytest.approx(best[0], rel=1e-4)
    alpha, r = best[1]
    assert limit.error == pytest.approx(0.5 * math.erfc(m * alpha / math.hypot(alpha, r) / math.sqrt(2)), abs=2e-3)

# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: clkit.tau_star(0.0, 1.0), "sigma2"),
        (lambda: clkit.tau_star(0.5, -1.0), "mu_norm2"),
        (lambda: clkit.expansion_measure(torch.zeros(2, 2, dtype=DTYPE), _mu([1.0, 0.0])), "W"),
        (lambda: clkit.expansion_measure(torch.eye(2, dtype=DTYPE), _mu([1.0, 0.0, 0.0])), "mu"),
        (lambda: clkit.population_loss(torch.eye(2, dtype=DTYPE), _mu([1.0, 0.0]), 0.5, 0.0), "tau"),
        (lambda: clkit.population_loss(torch.eye(2, dtype=DTYPE), _mu([0.0, 0.0]), 0.5, 1.0), "mu"),
        (lambda: clkit.first_order_loss(torch.eye(2, dtype=DTYPE), _mu([1.0, 0.0]), float("nan"), 1.0), "sigma2"),
        (lambda: clkit.first_order_loss_profile(-1.0, 0.5, 1.0), "x"),
        (lambda: clkit.first_order_optimum(0.5, -2.0, 1.0), "tau"),
        (lambda: clkit.projector_family(_mu([1.0, 0.0]), -1.0), "eta"),
        (lambda: clkit.ridge_logistic_regression(torch.ones(4, 2, dtype=DTYPE), _mu([1.0, 0.0, 1.0, -1.0]), 0.1), "y"),
        (lambda: clkit.ridge_logistic_regression(torch.ones(4, 2, dtype=DTYPE), _mu([1.0, 1.0, -1.0, -1.0]), 0.0), "lam"),
        (lambda: clkit.linear_classifier_error(0.0, torch.zeros(2, dtype=DTYPE), _mu([1.0, 0.0])), "beta"),
        (lambda: clkit.max_margin_classifier(torch.ones(3, 2, dtype=DTYPE), _mu([1.0, -1.0])), "y"),
        (lambda: clkit.minimize_over_projector("first_order", _mu([1.0, 0.0]), 0.5, 1.0,
                                               torch.eye(2, dtype=DTYPE), gtol=0.0), "gtol"),
        (lambda: clkit.exact_threshold(0.0, 1.0), "sigma2"),
        (lambda: clkit.exact_threshold(float("nan"), 1.0), "sigma2"),
        (lambda: clkit.exact_threshold(1.0, -2.0), "mu_norm2"),
        (lambda: clkit.exact_threshold(1.0, float("inf")), "mu_norm2"),
        (lambda: clkit.rank_one_derivative(0.0, 1.0, 1.0), "tau"),
        (lambda: clkit.projector_parameter(1.5, 3), "t_tilde"),
        (lambda: clkit.projector_parameter(0.5, 1), "p"),
        (lambda: clkit.max_margin_asymptotics(10.0, 1.0, 0.0), "delta"),
        (lambda: clkit.max_margin_asymptotics(1.0, 1.0, -1.0), "eta"),
        (lambda: clkit.separability_threshold(-1.0), "mu_norm2"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


@pytest.mark.parametrize("name", ["population", "first_order", "second_order"])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (5, 5)])
def test_numpy_gradient_matches_autograd(name, shape):
    """The closed-form float64 gradient of minimize_over_projector(gradient="closed_form") equals autograd's."""
    gen = torch.Generator().manual_seed(sum(shape))
    loss = getattr(projection, f"{name}_loss")
    core = getattr(projection, f"_{name}_value_grad_M")
    for sigma2, tau in [(0.1, 0.05), (1.0, 0.7), (4.0, 3.0)]:
        W = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
        mu = 2 * torch.randn(shape[1], generator=gen, dtype=torch.float64)
        value = loss(W, mu, sigma2, tau)
        (grad,) = torch.autograd.grad(value, W)
        W_np = W.detach().numpy()
        value_np, grad_M = core(W_np.T @ W_np, mu.numpy(), sigma2, tau)
        assert value_np == pytest.approx(float(value.detach()), rel=1e-12, abs=1e-14)
        np.testing.assert_allclose(2 * W_np @ grad_M, grad.numpy(), rtol=1e-9, atol=1e-13)


def test_rank_one_derivative_on_arrays_equals_the_scalar_formula():
    taus = np.geomspace(1e-3, 50.0, 37)
    values = clkit.rank_one_derivative(taus, 0.7, 2.5)
    assert isinstance(values, np.ndarray) and values.shape == taus.shape
    expected = [clkit.rank_one_derivative(float(t), 0.7, 2.5) for t in taus]
    np.testing.assert_allclose(values, expected, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="tau"):
        clkit.rank_one_derivative(np.array([1.0, -1.0]), 0.7, 2.5)


def test_exact_threshold_on_arrays_matches_the_scalar_brent_path():
    sigma2 = np.geomspace(1e-3, 10.0, 9)[:, None]
    rho = np.geomspace(0.05, 1e3, 11)[None, :]
    grid = clkit.exact_threshold(sigma2, rho)
    assert grid.shape == (9, 11)
    loop = np.array([[clkit.exact_threshold(float(s), float(r)) for r in rho[0]] for s in sigma2[:, 0]])
    # near its root g is resolved only to round-off, which moves the root by up to ~1e-13
    # relative where g is flat in log tau (large |mu|^2): measured 3.4e-13
    np.testing.assert_allclose(grid, loop, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="mu_norm2"):
        clkit.exact_threshold(sigma2, -rho)


@pytest.mark.parametrize("name", ["population", "first_order"])
def test_closed_form_and_autograd_routes_find_the_same_minimiser(name):
    """gradient="closed_form" (numpy chain rule) and "autograd" (torch) reach the same t~."""
    mu, W0 = _mu([1.0, 0.5, 0.0]), _random((3, 3), seed=31)
    tau = 0.5 * clkit.tau_star(1.0, 1.25)  # shrinkage: an interior, full-rank minimiser
    a = clkit.minimize_over_projector(name, mu, 1.0, tau, W0, gtol=1e-10)
    b = clkit.minimize_over_projector(name, mu, 1.0, tau, W0, gtol=1e-10, gradient="autograd")
    t_a, t_b = float(clkit.expansion_measure(a, mu)), float(clkit.expansion_measure(b, mu))
    assert 0.01 < t_a < 0.99
    assert t_a == pytest.approx(t_b, abs=1e-8)


def test_minimize_over_projector_escapes_the_saddle_where_lbfgsb_stalls():
    """(1, 1) at 0.9 tau_e from these starts L-BFGS-B with scipy's default ftol stops with gradient
    5e-6 to 3.5e-5 next to a saddle (t~ = 0.941, a Hessian eigenvalue -1.5e-3, checked by hand);
    the result must be the minimiser of the isotropic family (t~ = 0.917, lower loss)."""
    mu = _mu([1.0, 0.0, 0.0])
    tau = 0.9 * clkit.exact_threshold(1.0, 1.0)
    found = []
    for seed in (43, 52, 56):
        W = clkit.minimize_over_projector("population", mu, 1.0, tau, _random((3, 3), seed=seed), gtol=1e-9)
        found.append(float(clkit.expansion_measure(W, mu)))
    # the isotropic family M(T) = e1 e1^T + T/(p-1) P_perp: t~ = 1/(1+T); minimise over T
    from scipy.optimize import minimize_scalar

    def along_family(T: float) -> float:
        W = torch.diag(torch.tensor([1.0, math.sqrt(T / 2), math.sqrt(T / 2)], dtype=DTYPE))
        return float(clkit.population_loss(W, mu, 1.0, tau))

    T_opt = minimize_scalar(along_family, bounds=(1e-8, 1.0), method="bounded", options={"xatol": 1e-12}).x
    assert max(abs(t - 1 / (1 + T_opt)) for t in found) < 1e-5


@pytest.mark.parametrize("gradient", ["closed_form", "autograd"])
@pytest.mark.parametrize("start", [(1.0, 0.0, 0.0), (1.0, 1e-9, 1e-9)])
def test_minimize_over_projector_leaves_the_rank_one_saddle(gradient, start):
    """The aligned rank-one W is an exact stationary point at every tau (grad F = 2 W G = 0);
    below tau_e it is a saddle (g = -0.01685 at (1, 1), tau = tau_e / 2). Started on it, or 1e-9
    from it, the result must be the minimiser of the isotropic family M(T) (t~ = 0.62660,
    C = -0.1102813, by a scalar search independent of the optimiser), not t~ = 1."""
    mu = _mu([1.0, 0.0, 0.0])
    tau = 0.5 * clkit.exact_threshold(1.0, 1.0)
    assert clkit.rank_one_derivative(tau, 1.0, 1.0) < 0  # a saddle: lower along P_perp
    W = clkit.minimize_over_projector("population", mu, 1.0, tau, torch.diag(torch.tensor(start, dtype=DTYPE)),
                                      gtol=1e-10, gradient=gradient)
    from scipy.optimize import minimize_scalar

    def along_family(T: float) -> float:
        W_T = torch.diag(torch.tensor([1.0, math.sqrt(T / 2), math.sqrt(T / 2)], dtype=DTYPE))
        return float(clkit.population_loss(W_T, mu, 1.0, tau))

    res = minimize_scalar(along_family, bounds=(1e-8, 5.0), method="bounded", options={"xatol": 1e-12})
    assert float(clkit.expansion_measure(W, mu)) == pytest.approx(1 / (1 + res.x), abs=1e-6)
    assert float(clkit.population_loss(W, mu, 1.0, tau)) == pytest.approx(res.fun, abs=1e-12)
    assert res.fun < along_family(0.0) - 3e-3  # the rank-one value -0.1066680 is 3.6e-3 higher


def test_minimize_over_projector_keeps_the_rank_one_minimiser_above_tau_e():
    """Above tau_e the rank-one aligned W is a local minimiser (g > 0): started there, the
    second-order test must accept it (t~ = 1), not step away."""
    mu = _mu([1.0, 0.0, 0.0])
    tau = 1.5 * clkit.exact_threshold(1.0, 1.0)
    assert clkit.rank_one_derivative(tau, 1.0, 1.0) > 0
    W = clkit.minimize_over_projector("population", mu, 1.0, tau, torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE)),
                                      gtol=1e-10)
    assert float(clkit.expansion_measure(W, mu)) == pytest.approx(1.0, abs=1e-12)


def test_lowest_curvature_at_rank_one_point_is_twice_the_slope():
    """At the aligned rank-one W with ||W||_F = 1, d/dT of C along M(T) is g and a unit step
    v e_j^T (v, j perpendicular to the signal) changes C by g |step|^2 + O(|step|^3): the
    curvature of F there is 2 g, the smallest off-gauge eigenvalue when g < 0."""
    mu = _mu([1.0, 0.0, 0.0])
    tau = 0.5 * clkit.exact_threshold(1.0, 1.0)
    W = np.diag([1.0, 0.0, 0.0])
    f = lambda w: projection._population_value_grad_M(w.reshape(3, 3).T @ w.reshape(3, 3), mu.numpy(), 1.0, tau)[0]  # noqa: E731
    h, x = 1e-4, W.ravel()
    H = np.empty((9, 9))
    E = np.eye(9) * h
    for i in range(9):
        for j in range(9):
            H[i, j] = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j]) + f(x - E[i] - E[j])) / (4 * h * h)
    lowest, _ = projection._lowest_curvature(H, W)
    assert lowest == pytest.approx(2 * clkit.rank_one_derivative(tau, 1.0, 1.0), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"loss": "exact"}, "loss"), ({"gradient": "numeric"}, "gradient"), ({"htol": 0.0}, "htol")],
)
def test_minimize_over_projector_rejects_unknown_loss_and_gradient(kwargs, argument):
    args = {"loss": "population", "mu": _mu([1.0, 0.0]), "sigma2": 0.5, "tau": 1.0,
            "W0": torch.eye(2, dtype=DTYPE)} | kwargs
    with pytest.raises(ValueError, match=argument):
        clkit.minimize_over_projector(**args)


@pytest.mark.parametrize("sigma2", [0.3, 1.0, 4.0, 10.0, 30.0])
def test_threshold_ratio_coefficient_is_the_large_signal_slope_of_exact_threshold(sigma2):
    """(tau_e/tau* - 1)|mu|^2 -> kappa(sigma2) with an O(1/|mu|^2) remainder (Richardson on 1e4, 1e5)."""
    d = [(clkit.exact_threshold(sigma2, r) / clkit.tau_star(sigma2, r) - 1) * r for r in (1e4, 1e5)]
    richardson = (10 * d[1] - d[0]) / 9
    assert richardson == pytest.approx(clkit.threshold_ratio_coefficient(sigma2), abs=1e-3 * (1 + sigma2))


def test_threshold_ratio_coefficient_changes_sign_once_near_4_09_and_accepts_arrays():
    from scipy.optimize import brentq

    grid = np.geomspace(1e-3, 1e3, 400)
    values = clkit.threshold_ratio_coefficient(grid)
    assert int((np.sign(values[1:]) != np.sign(values[:-1])).sum()) == 1
    assert brentq(clkit.threshold_ratio_coefficient, 1.0, 10.0) == pytest.approx(4.09, abs=0.01)
    with pytest.raises(ValueError, match="sigma2"):
        clkit.threshold_ratio_coefficient(-1.0)


@pytest.mark.parametrize("sigma2, rho", [(1e-6, 1e-3), (1e-6, 1.0), (1e-3, 1e-3), (1.0, 1e-3), (30.0, 1e3),
                                         (1e-4, 1e4), (100.0, 1e5), (1.0, 1.0)])
def test_exact_threshold_matches_mpmath_at_extreme_configurations(sigma2, rho):
    """Root of the bracket of g in 60-digit arithmetic (the formula as stated, exp form)."""
    import mpmath as mp

    mp.mp.dps = 60

    def bracket(log_tau):
        tau, s2, r = mp.e**log_tau, mp.mpf(sigma2), mp.mpf(rho)
        w = 1 + s2
        v, s = 2 * w, w + r
        c = 1 / (2 * tau * s)
        k = 1 + 2 * c * v
        return 2 * s2 * r - v * (s - w / k) + 2 * v * r / (k**2 * (1 + mp.exp(4 * c * r / k)))

    scalar = clkit.exact_threshold(sigma2, rho)
    root = mp.e ** mp.findroot(bracket, mp.log(scalar))
    assert float(abs(scalar / root - 1)) < 1e-14
    assert float(abs(clkit.exact_threshold(np.array([sigma2]), rho)[0] / root - 1)) < 1e-14


# --- the consistent second-order surrogate and its threshold tau_2 -------------------------------


def test_second_order_loss_is_the_population_loss_to_second_order_in_c():
    """C - L2 = O(c^3): the ratio of the gaps a decade apart in tau is 10^3 (a dropped K0: 10^2)."""
    W, mu = _random((3, 4), seed=41), _mu([0.7, -1.0, 0.2, 0.4])
    gaps = [abs(float(clkit.population_loss(W, mu, 1.3, t) - clkit.second_order_loss(W, mu, 1.3, t)))
            for t in (1e2, 1e3)]
    assert math.log10(gaps[0] / gaps[1]) == pytest.approx(3.0, abs=0.01)
    assert float(clkit.second_order_loss(3.0 * W, mu, 1.3, 0.4)) == pytest.approx(
        float(clkit.second_order_loss(W, mu, 1.3, 0.4)), rel=1e-13)


@pytest.mark.parametrize("sigma2, rho", [(0.3, 0.5), (1.0, 1.0), (10.0, 256.0)])
def test_second_order_threshold_is_where_the_full_matrix_minimiser_of_L2_becomes_rank_one(sigma2, rho):
    mu = _mu([math.sqrt(rho), 0.0, 0.0])
    t2 = clkit.second_order_threshold(sigma2, rho)
    shares = [1 - float(clkit.expansion_measure(clkit.minimize_over_projector(
        "second_order", mu, sigma2, f * t2, _random((3, 3), seed=5), gtol=1e-10), mu)) for f in (0.99, 1.01)]
    assert shares[0] > 1e-4 and shares[1] < 1e-9


def test_second_order_threshold_is_a_sign_change_of_autograd_slope_and_brackets_tau_e():
    def slope(tau, sigma2, rho, T=1e-10):
        T_t = torch.tensor(T, dtype=DTYPE, requires_grad=True)
        W = torch.diag(torch.stack([torch.ones((), dtype=DTYPE), (T_t / 2).sqrt(), (T_t / 2).sqrt()]))
        (g,) = torch.autograd.grad(clkit.second_order_loss(W, _mu([math.sqrt(rho), 0, 0]), sigma2, tau), T_t)
        return float(g)

    for sigma2, rho in [(0.2, 3.0), (2.0, 0.5), (20.0, 900.0)]:
        t2 = clkit.second_order_threshold(sigma2, rho)
        assert slope(t2 * (1 - 1e-6), sigma2, rho) < 0 < slope(t2 * (1 + 1e-6), sigma2, rho)
        assert clkit.tau_star(sigma2, rho) < t2 and clkit.exact_threshold(sigma2, rho) < t2
    grid = clkit.second_order_threshold(np.array([0.2, 2.0]), np.array([3.0, 0.5]))
    np.testing.assert_allclose(grid, [clkit.second_order_threshold(0.2, 3.0),
                                      clkit.second_order_threshold(2.0, 0.5)], rtol=1e-15)
    with pytest.raises(ValueError, match="mu_norm2"):
        clkit.second_order_threshold(1.0, -1.0)
