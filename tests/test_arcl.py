"""clkit.arcl against independent computations: Monte Carlo, scipy, brute force and autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import multivariate_normal, norm

import clkit

DTYPE = torch.float64


def _w(w1: float, w2: float) -> torch.Tensor:
    return torch.tensor([w1, w2], dtype=DTYPE)


def test_sample_example_data_is_deterministic_and_labels_are_sign_of_x1():
    x_a, y_a = clkit.sample_example_data(1000, clkit.make_generator(3, "cpu"))
    x_b, y_b = clkit.sample_example_data(1000, clkit.make_generator(3, "cpu"))
    assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    assert x_a.shape == (1000, 2) and x_a.dtype == DTYPE
    assert torch.equal(y_a, (x_a[:, 0] >= 0).long())


def test_augment_scales_only_the_second_coordinate_and_broadcasts():
    x = torch.tensor([[1.0, 2.0], [-3.0, 4.0]], dtype=DTYPE)
    out = clkit.augment(x, torch.tensor([0.5, -2.0], dtype=DTYPE))
    assert torch.equal(out, torch.tensor([[1.0, 1.0], [-3.0, -8.0]], dtype=DTYPE))
    grid = clkit.augment(x[:, None, :], torch.tensor([0.0, 1.0, 3.0], dtype=DTYPE))
    assert grid.shape == (2, 3, 2)
    assert torch.equal(grid[:, 1], x) and torch.equal(grid[:, 0, 1], torch.zeros(2, dtype=DTYPE))


def test_linear_representation_equals_dot_product_loop():
    x = torch.randn(5, 2, dtype=DTYPE, generator=clkit.make_generator(0, "cpu"))
    w = _w(0.3, -1.2)
    loop = torch.tensor([float(w[0] * r[0] + w[1] * r[1]) for r in x], dtype=DTYPE)
    assert torch.allclose(clkit.linear_representation(x, w), loop, rtol=0, atol=1e-15)


@pytest.mark.parametrize("epsilon", [0.0, -0.1, math.nan, math.inf])
def test_counterexample_weights_reject_nonpositive_or_nonfinite_epsilon(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        clkit.counterexample_weights(epsilon)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: clkit.alignment_loss(torch.ones(3, dtype=DTYPE)), "weights"),
        (lambda: clkit.alignment_loss(_w(1, 1), theta_variance=-1.0), "theta_variance"),
        (lambda: clkit.ar_loss(_w(1, 1), (2.0, 0.5)), "theta_range"),
        (lambda: clkit.ar_loss(_w(1, 1), (0.0,)), "theta_range"),
        (lambda: clkit.augment(torch.ones(4, 3, dtype=DTYPE), 1.0), "x"),
        (lambda: clkit.augment(torch.ones(4, 2, dtype=DTYPE), math.nan), "theta"),
        (lambda: clkit.linear_representation(torch.ones(4, 2, dtype=DTYPE), torch.ones(2, 2, dtype=DTYPE)), "weights"),
        (lambda: clkit.head_risk(_w(1, 1), math.inf, 1.0, 0.0), "c"),
        (lambda: clkit.domain_risk(_w(1, math.nan), 1.0), "weights"),
        (lambda: clkit.logistic_domain_risk(_w(1, 1), 1.0, 1.0, 0.0, n_nodes=0), "n_nodes"),
        (lambda: clkit.fit_logistic_heads(_w(1, 0), torch.tensor([1.0], dtype=DTYPE)), "theta"),
        (lambda: clkit.sample_example_data(0, clkit.make_generator(0, "cpu")), "n"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_alignment_loss_of_counterexample_is_half_epsilon():
    for eps in (1e-4, 0.1, 3.0):
        assert float(clkit.alignment_loss(clkit.counterexample_weights(eps))) == pytest.approx(eps / 2, rel=1e-15)


def test_alignment_loss_matches_monte_carlo_with_uniform_strengths():
    gen = clkit.make_generator(1, "cpu")
    n, (lo, hi) = 200_000, (-0.5, 2.0)
    x, _ = clkit.sample_example_data(n, gen)
    t1 = lo + (hi - lo) * torch.rand(n, dtype=DTYPE, generator=gen)
    t2 = lo + (hi - lo) * torch.rand(n, dtype=DTYPE, generator=gen)
    w = _w(0.7, 0.4)
    sq = (clkit.linear_representation(clkit.augment(x, t1), w) - clkit.linear_representation(clkit.augment(x, t2), w)) ** 2
    est = clkit.monte_carlo_mean(sq)
    exact = float(clkit.alignment_loss(w, theta_variance=(hi - lo) ** 2 / 12))
    assert abs(est.mean - exact) <= 4 * est.stderr


def test_ar_loss_matches_brute_force_maximum_over_pairs():
    gen = clkit.make_generator(2, "cpu")
    x, _ = clkit.sample_example_data(50, gen)
    w, family = _w(1.0, -0.6), (-1.5, 0.5)
    grid = torch.linspace(*family, 7, dtype=DTYPE)
    worst = []
    for xi in x:
        feats = [float(clkit.linear_representation(clkit.augment(xi, t), w)) for t in grid]
        worst.append(max((a - b) ** 2 for a in feats for b in feats))
    per_sample = (family[1] - family[0]) ** 2 * float(w[1]) ** 2 * x[:, 1] ** 2
    assert np.allclose(worst, per_sample.numpy(), rtol=1e-12, atol=0)
    assert float(clkit.ar_loss(w, family)) == pytest.approx((family[1] - family[0]) ** 2 * 0.36, rel=1e-15)


def test_ar_loss_is_infinite_on_an_unbounded_family_unless_invariant():
    assert math.isinf(float(clkit.ar_loss(clkit.counterexample_weights(0.01), (-math.inf, math.inf))))
    assert float(clkit.ar_loss(_w(1.0, 0.0), (-math.inf, math.inf))) == 0.0
    assert float(clkit.ar_first_moment(_w(1.0, 0.0), (-math.inf, math.inf))) == 0.0


def test_ar_first_moment_matches_monte_carlo_and_is_below_sqrt_ar():
    x, _ = clkit.sample_example_data(200_000, clkit.make_generator(4, "cpu"))
    w, family = _w(0.2, 1.3), (0.5, 2.0)
    samples = (family[1] - family[0]) * abs(float(w[1])) * x[:, 1].abs()
    est = clkit.monte_carlo_mean(samples)
    exact = float(clkit.ar_first_moment(w, family))
    assert abs(est.mean - exact) <= 4 * est.stderr
    assert exact <= math.sqrt(float(clkit.ar_loss(w, family)))


@pytest.mark.parametrize("w1, w2, c", [(1.0, 0.5, 1.3), (0.4, -1.0, 2.0), (-0.8, 0.3, -1.1)])
@pytest.mark.parametrize("h, b", [(1.0, 0.0), (2.0, 0.7), (-1.5, 0.3), (0.5, -1.2)])
def test_head_risk_matches_scipy_bivariate_normal(w1, w2, c, h, b):
    a, s = w1, c * w2
    t = -b / h
    cov = np.array([[1.0, a], [a, a * a + s * s]])
    p_x1_neg_z_below = multivariate_normal(mean=[0.0, 0.0], cov=cov).cdf([0.0, t])
    r_plus = 0.5 + norm.cdf(t / math.sqrt(a * a + s * s)) - 2 * p_x1_neg_z_below
    expected = r_plus if h > 0 else 1 - r_plus
    assert float(clkit.head_risk(_w(w1, w2), c, h, b)) == pytest.approx(expected, abs=1e-7)


def test_head_risk_on_the_invariant_domain_is_the_mass_between_zero_and_threshold():
    t = torch.linspace(-2, 2, 9, dtype=DTYPE)
    risk = clkit.head_risk(_w(1.0, 0.7), 0.0, 1.0, -t)
    assert torch.allclose(risk, (torch.special.ndtr(t) - 0.5).abs(), atol=1e-15, rtol=0)


def test_head_risk_matches_monte_carlo():
    gen = clkit.make_generator(5, "cpu")
    x, y = clkit.sample_example_data(200_000, gen)
    w, c, h, b = _w(0.9, 0.6), 1.7, -0.8, 0.25
    z = clkit.linear_representation(clkit.augment(x, c), w)
    errors = ((h * z + b >= 0).long() != y).double()
    est = clkit.monte_carlo_mean(errors)
    assert abs(est.mean - float(clkit.head_risk(w, c, h, b))) <= 4 * est.stderr


def test_domain_risk_is_the_minimum_over_a_brute_force_grid_of_heads():
    w = _w(0.8, 0.5)
    for c in (0.0, 0.4, 2.5):
        hs = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=DTYPE)[:, None]
        bs = torch.linspace(-2, 2, 401, dtype=DTYPE)[None, :]
        grid_min = float(clkit.head_risk(w, c, hs, bs).min())
        closed = float(clkit.domain_risk(w, c))
        assert closed <= grid_min + 1e-14
        assert grid_min == pytest.approx(closed, abs=1e-14)  # the grid contains b = 0


def test_domain_risk_recovers_one_quarter_at_c_prime():
    for eps in (1e-3, 0.1, 0.5):
        c_prime = 2 / math.sqrt(eps)
        assert float(clkit.domain_risk(clkit.counterexample_weights(eps), c_prime)) == pytest.approx(0.25, abs=1e-15)


def test_logistic_domain_risk_matches_monte_carlo():
    gen = clkit.make_generator(6, "cpu")
    x, y = clkit.sample_example_data(200_000, gen)
    w, theta, h, b = _w(0.9, 0.4), 1.5, 2.0, 0.3
    z = clkit.linear_representation(clkit.augment(x, theta), w)
    losses = torch.nn.functional.softplus(-(2 * y - 1).double() * (h * z + b))
    est = clkit.monte_carlo_mean(losses)
    assert abs(est.mean - float(clkit.logistic_domain_risk(w, theta, h, b))) <= 4 * est.stderr


def test_logistic_domain_risk_converges_under_node_doubling():
    w = _w(0.95, 0.3)
    coarse = clkit.logistic_domain_risk(w, 1.0, 3.0, 0.2, n_nodes=64)
    fine = clkit.logistic_domain_risk(w, 1.0, 3.0, 0.2, n_nodes=128)
    assert abs(float(coarse - fine)) < 1e-9


def test_fit_logistic_heads_zeroes_the_autograd_gradient_and_matches_scipy():
    w = _w(0.9, 0.45)
    theta = torch.tensor([0.5, 1.0, 2.0], dtype=DTYPE)
    h, b = clkit.fit_logistic_heads(w, theta, n_nodes=48)
    params = torch.stack([h, b], -1).requires_grad_(True)
    risk = clkit.logistic_domain_risk(w, theta, params[:, 0], params[:, 1], n_nodes=48).sum()
    (grad,) = torch.autograd.grad(risk, params)
    assert float(grad.abs().max()) < 1e-10
    for k in range(3):
        fun = lambda p: float(clkit.logistic_domain_risk(w, theta[k], p[0], p[1], n_nodes=48))
        ref = minimize(fun, x0=np.array([1.0, 0.5]), method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 4000})
        assert ref.x[0] == pytest.approx(float(h[k]), abs=1e-5)
        assert abs(ref.x[1]) < 1e-5 and abs(float(b[k])) < 1e-12


def test_transfer_lemma_holds_and_is_scale_invariant():
    w = _w(0.9, 0.45)
    family = (0.5, 2.0)
    theta = torch.linspace(*family, 4, dtype=DTYPE)
    gaps = []
    for lam in (1.0, 0.2):
        h, b = clkit.fit_logistic_heads(lam * w, theta, n_nodes=48)
        risks = clkit.logistic_domain_risk(lam * w, theta[:, None], h[None, :], b[None, :], n_nodes=48)
        gap = risks - risks.diagonal()[:, None]
        bound = (h.abs()[:, None] + h.abs()[None, :]) * math.sqrt(float(clkit.ar_loss(lam * w, family)))
        assert float(gap.min()) >= -1e-12
        assert bool((gap <= bound).all())
        gaps.append(gap)
    assert torch.allclose(gaps[0], gaps[1], atol=1e-9, rtol=0)


def test_fit_logistic_heads_is_device_agnostic_in_its_output():
    w = _w(1.0, 0.5)
    h, b = clkit.fit_logistic_heads(w, torch.tensor([1.0], dtype=DTYPE), n_nodes=32)
    assert h.device == w.device and b.dtype == DTYPE


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: clkit.expected_squared_range(0), "m"),
        (lambda: clkit.expected_squared_range(2.0), "m"),
        (lambda: clkit.logistic_risk_by_conditioning(_w(1, 1), 1.0, 1.0, 0.0, n_per_panel=0), "n_per_panel"),
        (lambda: clkit.logistic_risk_by_conditioning(_w(1, 1), math.nan, 1.0, 0.0), "theta"),
        (lambda: clkit.optimal_logistic_heads(_w(1, 0), torch.tensor([1.0], dtype=DTYPE)), "theta"),
        (lambda: clkit.fit_logistic_heads_on_sample(torch.ones(2, 3, 4, dtype=DTYPE), torch.ones(4)), "features"),
        (lambda: clkit.fit_logistic_heads_on_sample(torch.ones(2, 4, dtype=DTYPE), torch.ones(3)), "labels"),
        (lambda: clkit.fit_logistic_heads_on_sample(torch.tensor([-1.0, 1.0], dtype=DTYPE),
                                                    torch.tensor([0, 1])), "features"),
        (lambda: clkit.conjecture_ratio(0.0, 1.0), "s_a"),
        (lambda: clkit.conjecture_ratio(1.0, 1e-7), "s_b"),
        (lambda: clkit.optimal_logistic_heads(_w(1, 1), torch.tensor([1e-8], dtype=DTYPE)), "theta"),
        (lambda: clkit.logistic_risk_by_conditioning(_w(1, 1), 1e-7, 1.0, 0.0), "theta"),
        (lambda: clkit.conjecture_ratio(1.0, -1.0), "s_b"),
        (lambda: clkit.conjecture_ratio(math.nan, 1.0), "s_a"),
        (lambda: clkit.conjecture_ratio(torch.tensor([1.0, 2.0]), 2.0), "s_a"),
        (lambda: clkit.conjecture_ratio_limit(0.0), "s"),
        (lambda: clkit.conjecture_ratio_corner(1.0), "t"),
        (lambda: clkit.conjecture_ratio_corner(torch.tensor([0.5, -1.0])), "t"),
        (lambda: clkit.conjecture_ratio_limit(torch.tensor([1.0, -1.0])), "s"),
    ],
)
def test_new_functions_reject_bad_input_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_expected_squared_range_exact_small_m_and_monte_carlo():
    assert clkit.expected_squared_range(1) == 0.0
    assert clkit.expected_squared_range(2) == pytest.approx(2.0, abs=1e-12)  # R = |theta_1 - theta_2|
    gen = clkit.make_generator(7, "cpu")
    for m in (3, 10, 100):
        draws = torch.randn(100_000, m, dtype=DTYPE, generator=gen)
        est = clkit.monte_carlo_mean((draws.amax(1) - draws.amin(1)) ** 2)
        assert abs(est.mean - clkit.expected_squared_range(m)) <= 4 * est.stderr


def test_expected_squared_range_converges_under_node_doubling_and_grows_like_8_log_m():
    for m in (5, 1000):
        assert clkit.expected_squared_range(m) == pytest.approx(
            clkit.expected_squared_range(m, n_per_panel=32), rel=1e-12)
    values = [clkit.expected_squared_range(m) for m in (10, 100, 1000, 10_000)]
    assert all(b > a for a, b in zip(values, values[1:]))
    ratios = [v / (8 * math.log(m)) for v, m in zip(values, (10, 100, 1000, 10_000))]
    assert all(b > a for a, b in zip(ratios, ratios[1:])) and ratios[-1] < 1


def test_expected_squared_range_matches_a_direct_quadrature_without_the_shared_grid():
    # nested adaptive quadrature (scipy's QUADPACK) of the same two integrals: an independent
    # route to E R_m^2 (the clkit version is fixed Gauss-Legendre on a grid shared across m)
    from scipy.integrate import quad
    from scipy.special import ndtr

    def cdf(r: float, m: int) -> float:
        inner = lambda x: norm.pdf(x) * (ndtr(x + r) - ndtr(x)) ** (m - 1)
        return m * quad(inner, -9.0, 9.0, epsabs=1e-14, epsrel=1e-12, limit=200, points=[-r / 2])[0]

    for m in (2, 7, 300):
        direct = quad(lambda r: 2.0 * r * (1.0 - cdf(r, m)), 0.0, 14.0, epsabs=1e-12, epsrel=1e-12,
                      limit=200)[0]
        assert clkit.expected_squared_range(m) == pytest.approx(direct, rel=1e-12)
    # the cached grid is read-only: a caller cannot change later results
    for array in clkit.arcl._range_grid(16):
        assert not array.flags.writeable


def test_optimal_risk_matches_domain_risk_and_accepts_sympy():
    import sympy as sp

    w = _w(0.8, -0.5)
    c = torch.tensor([0.0, 0.7, 3.0], dtype=DTYPE)
    assert torch.allclose(clkit.optimal_risk(w[0], c * w[1]), clkit.domain_risk(w, c), atol=0, rtol=0)
    a, s = sp.symbols("a s", positive=True)
    expr = clkit.optimal_risk(a, s)
    assert float(expr.subs({a: 0.8, s: 0.35})) == pytest.approx(math.atan(0.35 / 0.8) / math.pi, abs=1e-15)
    assert clkit.optimal_risk(sp.Integer(1), sp.Integer(1)) == sp.Rational(1, 4)


def test_alignment_loss_accepts_sympy_weights():
    import sympy as sp

    w1, w2, v = sp.symbols("w1 w2 v", positive=True)
    assert sp.expand(clkit.alignment_loss((w1, w2), v) - 2 * v * w2**2) == 0


def test_logistic_risk_by_conditioning_matches_two_dimensional_quadrature_and_monte_carlo():
    w = _w(0.9, 0.4)
    theta = torch.tensor([0.3, 1.5, 4.0], dtype=DTYPE)
    for h, b in ((2.0, 0.3), (-1.0, 0.0), (7.5, -1.2)):
        one_d = clkit.logistic_risk_by_conditioning(w, theta, h, b)
        two_d = clkit.logistic_domain_risk(w, theta, h, b, n_nodes=128)
        assert torch.allclose(one_d, two_d, atol=1e-9, rtol=0)
    gen = clkit.make_generator(8, "cpu")
    x, y = clkit.sample_example_data(200_000, gen)
    z = clkit.linear_representation(clkit.augment(x, 1.5), w)
    est = clkit.monte_carlo_mean(torch.nn.functional.softplus(-(2 * y - 1).double() * (2.0 * z + 0.3)))
    assert abs(est.mean - float(clkit.logistic_risk_by_conditioning(w, 1.5, 2.0, 0.3))) <= 4 * est.stderr


def test_optimal_logistic_heads_match_two_dimensional_newton():
    w = _w(0.9, 0.45)
    theta = torch.tensor([0.5, 1.0, 2.0], dtype=DTYPE)
    h_2d, b_2d = clkit.fit_logistic_heads(w, theta, n_nodes=96)
    assert torch.allclose(clkit.optimal_logistic_heads(w, theta), h_2d, atol=1e-7, rtol=0)
    assert float(b_2d.abs().max()) < 1e-10


def test_optimal_logistic_heads_near_separable_match_scalar_minimisation():
    from scipy.optimize import minimize_scalar

    w = _w(1.0, 1e-3)  # k = a/|s| up to 2000: nearly separable domains
    theta = torch.tensor([0.5, 2.0], dtype=DTYPE)
    h = clkit.optimal_logistic_heads(w, theta)
    for k in range(2):
        fun = lambda v: float(clkit.logistic_risk_by_conditioning(w, theta[k], v, 0.0))
        ref = minimize_scalar(fun, bracket=(0.5 * float(h[k]), float(h[k]), 2 * float(h[k])),
                              tol=1e-12)
        assert ref.x == pytest.approx(float(h[k]), rel=1e-5)
    # the optimal bias is 0: the risk is even in b
    r_plus = clkit.logistic_risk_by_conditioning(w, theta, h, 0.3)
    r_minus = clkit.logistic_risk_by_conditioning(w, theta, h, -0.3)
    assert torch.allclose(r_plus, r_minus, atol=1e-14, rtol=0)


def test_fit_logistic_heads_on_sample_zeroes_the_autograd_gradient_and_matches_scipy():
    gen = clkit.make_generator(9, "cpu")
    x, y = clkit.sample_example_data(2_000, gen)
    theta = torch.tensor([0.5, 2.0], dtype=DTYPE)
    w = _w(0.9, 0.45)
    z = clkit.linear_representation(clkit.augment(x[None], theta[:, None]), w)
    h, b = clkit.fit_logistic_heads_on_sample(z, y)
    params = torch.stack([h, b], -1).requires_grad_(True)
    ys = (2 * y - 1).double()
    risk = torch.nn.functional.softplus(-ys * (params[:, :1] * z + params[:, 1:])).mean(1).sum()
    (grad,) = torch.autograd.grad(risk, params)
    assert float(grad.abs().max()) < 1e-10
    fun = lambda p: float(torch.nn.functional.softplus(-ys * (p[0] * z[1] + p[1])).mean())
    ref = minimize(fun, x0=np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-9, "fatol": 1e-15, "maxiter": 4000})
    assert ref.x[0] == pytest.approx(float(h[1]), abs=1e-5) and ref.x[1] == pytest.approx(float(b[1]), abs=1e-5)


def test_conjecture_ratio_limit_matches_quadrature_of_the_edge_expectation():
    from scipy.integrate import quad

    for s in (0.01, 0.3, 1.0, 4.0, 50.0):
        # E (sW - |X|)_+ = 2 int_0^oo E_W[(sW - x)_+] phi(x) dx, E_W[(sW - x)_+] = s phi(x/s) - x Phi(-x/s)
        inner = lambda x, s=s: (s * norm.pdf(x / s) - x * norm.cdf(-x / s)) * norm.pdf(x)  # noqa: E731
        mean = 2 * quad(inner, 0, np.inf, epsabs=1e-14, epsrel=1e-13)[0]
        assert clkit.conjecture_ratio_limit(s) == pytest.approx(mean / s**2, rel=1e-10)
    s_t = torch.logspace(-4, 3, 50, dtype=DTYPE)
    limit = clkit.conjecture_ratio_limit(s_t)
    assert bool((limit.diff() < 0).all())
    assert float(limit[0]) == pytest.approx(1 / (2 * math.sqrt(2 * math.pi)), rel=1e-8)


def test_conjecture_ratio_tends_to_its_limit_at_the_separable_edge():
    s = torch.tensor([0.05, 1.0, 20.0], dtype=DTYPE)
    r_5, r_6 = clkit.conjecture_ratio(s, 1e-5), clkit.conjecture_ratio(s, 1e-6)
    gap = (r_6 - clkit.conjecture_ratio_limit(s)).abs()
    # linear in s_A': the gap at 1e-6 is a ninth of r(1e-5) - r(1e-6)
    torch.testing.assert_close(gap, (r_5 - r_6).abs() / 9, rtol=0.02, atol=1e-12)


def test_conjecture_ratio_matches_the_unreduced_ratio_and_the_2d_route():
    w = _w(0.7, -2.1)  # s = theta |w2 / w1| = 3 theta
    theta = torch.tensor([1.0 / 3.0, 0.1], dtype=DTYPE)  # s = 1.0 and 0.3
    h = clkit.optimal_logistic_heads(w, theta)
    risks = clkit.logistic_risk_by_conditioning(w, theta[0], h, 0.0)
    bound = h.abs().sum() * (theta[0] - theta[1]) ** 2 * w[1] ** 2 / torch.sqrt(w[0] ** 2 + (theta[1] * w[1]) ** 2)
    reduced = clkit.conjecture_ratio(3 * theta[0], 3 * theta[1])
    assert float((risks[1] - risks[0]) / bound) == pytest.approx(float(reduced), rel=1e-9)
    # independent route: 2-D quadrature and Newton over (h, b) on the feature X1 + s X2
    s = torch.tensor([1.0, 0.3], dtype=DTYPE)
    h2, b2 = clkit.fit_logistic_heads(_w(1, 1), s)
    r2 = clkit.logistic_domain_risk(_w(1, 1), s[0], h2, b2)
    ratio_2d = (r2[1] - r2[0]) / (h2.abs().sum() * 0.7**2 / math.sqrt(1 + 0.3**2))
    assert float(ratio_2d) == pytest.approx(float(reduced), abs=1e-9)  # measured gap ~2e-11


def test_conjecture_ratio_broadcasts_and_fits_heads_per_argument():
    s_a = torch.tensor([0.1, 1.0, 10.0], dtype=DTYPE)
    s_b = torch.tensor([0.2, 3.0], dtype=DTYPE)
    grid = clkit.conjecture_ratio(s_a[:, None], s_b[None, :])
    assert grid.shape == (3, 2)
    assert float(grid[1, 1]) == pytest.approx(float(clkit.conjecture_ratio(1.0, 3.0)), rel=1e-12)
    assert bool((grid > 0).all())


def test_conjecture_ratio_corner_is_the_small_s_limit_of_the_ratio():
    # r(s, t s) -> F(t) with a gap shrinking 100-fold per decade of s (quadratic in s)
    t = torch.tensor([0.05, 0.3, 3.0], dtype=DTYPE)
    corner = clkit.conjecture_ratio_corner(t)
    r_3, r_4 = clkit.conjecture_ratio(1e-3, 1e-3 * t), clkit.conjecture_ratio(1e-4, 1e-4 * t)
    assert bool(((r_4 - corner).abs() <= 2 * (r_3 - r_4).abs() / 99 + 1e-13).all())
    assert bool(((r_4 - corner).abs() < 1e-8).all())
    # t -> 0: the separable edge's value phi(0)/2 from below
    small = float(clkit.conjecture_ratio_corner(1e-4))
    assert 0 < 1 / (2 * math.sqrt(2 * math.pi)) - small < 1e-4
