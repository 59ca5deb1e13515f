"""clkit.optim: damped Newton and backtracking, checked against scipy.optimize."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from clkit.optim import NewtonResult, _backtracking, damped_newton

DT = torch.float64


def _logistic_problems(batch: int = 4, n: int = 60, p: int = 3, seed: int = 0):
    """Ridge-free logistic regressions with overlapping classes (strictly convex, minimiser exists)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n, p, generator=gen, dtype=DT)
    y = torch.where(torch.rand(batch, n, generator=gen, dtype=DT) < torch.sigmoid(z[..., 0]), 1.0, -1.0)

    def value(w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-y * (z @ w[..., None])[..., 0]).mean(-1)

    def vgh(w: torch.Tensor):
        m = y * (z @ w[..., None])[..., 0]
        s = torch.sigmoid(-m)
        grad = -(z * (y * s)[..., None]).mean(-2)
        hess = (z.transpose(-1, -2) * (s * (1 - s))[..., None, :]) @ z / n
        return value(w), grad, hess

    return z, y, value, vgh


def test_batched_logistic_regression_matches_scipy_trust_exact():
    z, y, value, vgh = _logistic_problems()
    result = damped_newton(vgh, torch.zeros(4, 3, dtype=DT), grad_tol=1e-12, value=value)
    assert isinstance(result, NewtonResult) and bool(result.converged.all())
    assert float(result.grad_norm.max()) < 1e-12
    for b in range(4):
        def fun(w, b=b):
            f, g, _ = vgh(torch.as_tensor(w, dtype=DT)[None].expand(4, 3))
            return float(f[b]), g[b].numpy()

        def hess(w, b=b):
            return vgh(torch.as_tensor(w, dtype=DT)[None].expand(4, 3))[2][b].numpy()

        ref = minimize(fun, np.zeros(3), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-10})
        # scipy may stop for precision loss; what counts is the gradient at its point.
        # Strong convexity: |x - x*| <= |g(x)| / lambda_min for each point, so they are at most
        # (|g_ref| + |g_ours|) / lambda_min apart; values agree to lambda_max gap^2 / 2 + round-off
        ref_grad = float(np.linalg.norm(fun(ref.x)[1]))
        assert ref_grad < 1e-8
        lam = np.linalg.eigvalsh(hess(ref.x))
        gap = 1.01 * (ref_grad + float(result.grad_norm[b])) / lam[0]
        np.testing.assert_allclose(result.x[b].numpy(), ref.x, atol=gap)
        assert abs(float(result.value[b]) - ref.fun) < lam[-1] * gap**2 + 1e-15


def test_non_quadratic_convex_matches_scipy_newton_cg():
    # f(x) = log sum_i exp(a_i^T x) + |x|^2 / 2: strictly convex
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(7, 5, generator=gen, dtype=DT)

    def vgh(x: torch.Tensor):
        logits = x @ a.T
        p = torch.softmax(logits, -1)
        f = torch.logsumexp(logits, -1) + 0.5 * (x * x).sum(-1)
        g = p @ a + x
        cov = torch.einsum("...k,ki,kj->...ij", p, a, a) - (p @ a)[..., :, None] * (p @ a)[..., None, :]
        return f, g, cov + torch.eye(5, dtype=DT)

    x0 = 3 * torch.ones(1, 5, dtype=DT)  # far from the minimiser: the line search is needed
    result = damped_newton(vgh, x0, grad_tol=1e-12)
    ref = minimize(lambda x: float(vgh(torch.as_tensor(x)[None])[0][0]), x0[0].numpy(),
                   jac=lambda x: vgh(torch.as_tensor(x)[None])[1][0].numpy(),
                   hess=lambda x: vgh(torch.as_tensor(x)[None])[2][0].numpy(),
                   method="Newton-CG", options={"xtol": 1e-14})
    np.testing.assert_allclose(result.x[0].numpy(), ref.x, atol=1e-8)


def _recording(vgh):
    """``vgh`` that records every point it is called at and the gradient there."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def wrapped(x):
        f, g, h = vgh(x)
        calls.append((x.clone(), g.clone()))
        return f, g, h

    return wrapped, calls


def test_logistic_newton_converges_quadratically():
    # Local Newton bound: |g(x + d)| = |int_0^1 (H(x + t d) - H(x)) d dt| <= (M / 2) |d|^2 with
    # |d| <= |g(x)| / lambda_min(H(x)), so g_{k+1} <= M / (2 lambda_min(H(x_k))^2) g_k^2.
    # For the mean logistic loss the Hessian is Lipschitz with M <= max|sigma''| mean|z_i|^3,
    # max|sigma (1 - sigma) (1 - 2 sigma)| = 1 / (6 sqrt 3). A diagonal or shifted Hessian or a
    # half step converges only linearly and fails this once the gradient is small.
    z, y, value, vgh = _logistic_problems()
    for b in range(4):
        def vgh_b(w, b=b):
            full = torch.zeros(4, 3, dtype=DT).expand(*w.shape[:-1], 4, 3).clone()
            full[..., b, :] = w
            f, g, h = vgh(full)
            return f[..., b], g[..., b, :], h[..., b, :, :]

        def value_b(w, b=b):
            return vgh_b(w)[0]

        rec, calls = _recording(vgh_b)
        result = damped_newton(rec, torch.zeros(1, 3, dtype=DT), grad_tol=1e-12, value=value_b)
        lip = float((z[b].norm(dim=-1) ** 3).mean()) / (6 * math.sqrt(3))
        norms = [float(g.norm()) for _, g in calls]
        assert len(norms) == result.n_iter + 1 and norms[-1] < 1e-12
        checked = 0
        for (x_k, _), g_k, g_next in zip(calls[:-1], norms[:-1], norms[1:]):
            lam = float(torch.linalg.eigvalsh(vgh_b(x_k)[2])[0, 0])
            if g_k < 1e-2:
                assert g_next <= lip / (2 * lam**2) * g_k**2 + 1e-15, (b, g_k, g_next)
                checked += 1
        assert checked >= 2


def test_grad_norm_is_the_minimum_over_the_iterates():
    # at the round-off floor (grad_tol unreachable) the last iterate need not be the best one
    _, _, value, vgh = _logistic_problems(batch=4, seed=3)
    rec, calls = _recording(vgh)
    result = damped_newton(rec, torch.zeros(4, 3, dtype=DT), grad_tol=1e-300, value=value,
                           max_iter=12, strict=False)
    norms = torch.stack([g.norm(dim=-1) for _, g in calls])  # (iterates, batch)
    torch.testing.assert_close(result.grad_norm, norms.min(0).values, atol=0, rtol=0)
    best = norms.argmin(0)
    for b in range(4):
        assert torch.equal(result.x[b], calls[int(best[b])][0][b])
    assert bool((norms[-1] > norms.min(0).values).any())  # the test can tell last from best


def test_a_problem_that_starts_converged_comes_back_bit_identical():
    _, _, value, vgh = _logistic_problems(batch=3, seed=2)
    solved = damped_newton(vgh, torch.zeros(3, 3, dtype=DT), grad_tol=1e-12, value=value).x
    x0 = torch.zeros(3, 3, dtype=DT)
    x0[1] = solved[1]  # gradient below 1e-12 but not zero: a Newton step would still move it
    assert 0 < float(vgh(x0)[1][1].norm()) < 1e-12
    result = damped_newton(vgh, x0, grad_tol=1e-12, value=value)
    assert result.n_iter >= 3 and torch.equal(result.x[1], x0[1])


def test_x_rtol_stops_at_the_predicted_step_of_a_linearly_converging_newton():
    # f = x^4: H is singular at the minimiser, Newton gives x_{k+1} = 2 x_k / 3 (full steps pass
    # Armijo: f drops by 65/81), |delta_k| = x_k / 3; the run stops at the first k with
    # x_k / 3 <= x_rtol (1 + x_{k+1}) and returns x_{k+1}.
    def vgh(x):
        return (x**4).sum(-1), 4 * x**3, (12 * x**2)[..., None]

    x_rtol, x, k = 1e-6, 1.0, 0
    while True:
        k += 1
        if x / 3 <= x_rtol * (1 + 2 * x / 3):
            break
        x = 2 * x / 3
    result = damped_newton(vgh, torch.ones(1, dtype=DT), grad_tol=0.0, x_rtol=x_rtol)
    assert result.n_iter == k and bool(result.converged)
    assert abs(float(result.x) - 2 * x / 3) <= 1e-15


def test_quadratic_is_solved_in_one_full_step():
    h = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=DT)
    c = torch.tensor([1.0, -2.0], dtype=DT)

    def vgh(x):
        return 0.5 * (x @ h * x).sum(-1) - x @ c, x @ h - c, h.expand(*x.shape[:-1], 2, 2)

    result = damped_newton(vgh, torch.zeros(2, dtype=DT), grad_tol=1e-13)
    assert result.n_iter == 1
    torch.testing.assert_close(result.x, torch.linalg.solve(h, c), atol=1e-15, rtol=0)


def test_line_search_is_needed_and_used():
    # f(x) = sqrt(1 + x^2): full Newton steps x -> -x^3 diverge from |x| > 1; damped ones converge
    def vgh(x):
        r = torch.sqrt(1 + x * x)
        return r[..., 0], x / r, (1 / r**3)[..., None]

    result = damped_newton(vgh, torch.tensor([[2.0], [-5.0], [0.5]], dtype=DT), grad_tol=1e-12)
    assert float(result.x.abs().max()) < 1e-12


def _saddle_vgh(v):
    """f = x^4/4 - x^2/2 + y^2: saddle at 0, minima at (+-1, 0); value, gradient, Hessian."""
    x, y = v[..., 0], v[..., 1]
    g = torch.stack([x**3 - x, 2 * y], -1)
    h = torch.diag_embed(torch.stack([3 * x**2 - 1, torch.full_like(y, 2.0)], -1))
    return x**4 / 4 - x**2 / 2 + y**2, g, h


def test_saddle_free_descends_from_near_a_saddle_like_scipy_trust_exact():
    vgh = _saddle_vgh
    x0 = torch.tensor([0.05, 0.3], dtype=DT)
    result = damped_newton(vgh, x0, grad_tol=1e-12, saddle_free=True)
    ref = minimize(lambda v: float(vgh(torch.as_tensor(v))[0]), x0.numpy(),
                   jac=lambda v: vgh(torch.as_tensor(v))[1].numpy(),
                   hess=lambda v: vgh(torch.as_tensor(v))[2].numpy(), method="trust-exact",
                   options={"gtol": 1e-10})
    # Hessian at (1, 0) is diag(2, 2): both points are within |g| / 2 of the minimiser
    np.testing.assert_allclose(result.x.numpy(), ref.x, atol=1e-10)
    assert abs(float(result.x[0]) - 1.0) < 1e-12


def test_saddle_free_first_step_is_the_absolute_hessian_newton_step():
    # One step from near the saddle of f = x^4/4 - x^2/2 + y^2, written out by hand:
    # H = diag(3x^2 - 1, 2) has a negative eigenvalue; |H|^{-1} g is the saddle-free step
    # (Dauphin et al. 2014). Clamping the negative eigenvalue instead of taking |.| gives a
    # step of ~1e12 that the line search would cut to a different point.
    vgh = _saddle_vgh
    x0 = torch.tensor([0.05, 0.3], dtype=DT)
    gx, hx = 0.05**3 - 0.05, 3 * 0.05**2 - 1
    expected = torch.tensor([0.05 - gx / abs(hx), 0.0], dtype=DT)  # full step passes Armijo
    result = damped_newton(vgh, x0, grad_tol=1e-12, saddle_free=True, max_iter=1, strict=False)
    np.testing.assert_allclose(result.x.numpy(), expected.numpy(), rtol=0, atol=1e-15)


def test_batch_entries_are_independent_and_converged_ones_stay():
    _, _, value, vgh = _logistic_problems(batch=3, seed=2)
    together = damped_newton(vgh, torch.zeros(3, 3, dtype=DT), grad_tol=1e-12, value=value)
    for b in range(3):
        def vgh_b(w, b=b):
            full = torch.zeros(3, 3, dtype=DT)
            full[b] = w
            f, g, h = vgh(full)
            return f[b], g[b], h[b]

        alone = damped_newton(vgh_b, torch.zeros(3, dtype=DT), grad_tol=1e-12)
        torch.testing.assert_close(together.x[b], alone.x, atol=1e-11, rtol=0)


def test_x_rtol_stops_on_small_steps_and_float32_is_kept():
    def vgh(x):
        e = x.exp()
        return (e - 2 * x).sum(-1), e - 2, torch.diag_embed(e)

    result = damped_newton(vgh, torch.zeros(3, 1, dtype=torch.float32), grad_tol=0.0, x_rtol=1e-6)
    assert result.x.dtype == torch.float32 and bool(result.converged.all())
    assert float((result.x - math.log(2)).abs().max()) < 1e-6


def test_failed_line_search_is_not_reported_as_converged_by_x_rtol():
    # f = (x - 3)^2 with a wrong-sign gradient: the Newton direction ascends, no Armijo step
    # exists, and the damped step 2^-40 |delta| would pass x_rtol; the full step |delta| = 0.1
    def vgh(x):
        return ((x - 3) ** 2).sum(-1), -2 * (x - 3), 2 * torch.eye(1, dtype=DT).expand(*x.shape[:-1], 1, 1)

    with pytest.raises(RuntimeError, match="not converged"):
        damped_newton(vgh, torch.tensor([[2.9]], dtype=DT), grad_tol=0.0, x_rtol=1e-12, max_iter=5)
    result = damped_newton(vgh, torch.tensor([[2.9]], dtype=DT), grad_tol=0.0, x_rtol=1e-12,
                           max_iter=5, strict=False)
    assert not bool(result.converged.any())


def test_non_convergence_raises_or_reports():
    def vgh(x):  # f = e^x, no minimiser
        return x.exp()[..., 0], x.exp(), x.exp()[..., None]

    with pytest.raises(RuntimeError, match="not converged"):
        damped_newton(vgh, torch.zeros(1, dtype=DT), grad_tol=1e-12, max_iter=5)
    result = damped_newton(vgh, torch.zeros(1, dtype=DT), grad_tol=1e-12, max_iter=5, strict=False)
    assert not bool(result.converged) and result.n_iter == 5 and len(result.history) == 6


def test_patience_stops_at_the_round_off_floor():
    def vgh(x):  # a gradient "noise floor" ~1e-8 (the steps land where cos(1e9 x) ~ +-1)
        return (x * x).sum(-1), 2 * x + 1e-8 * torch.cos(1e9 * x), 2 * torch.eye(1, dtype=DT)

    result = damped_newton(vgh, torch.ones(1, dtype=DT), grad_tol=1e-30, patience=3, strict=False)
    assert result.n_iter < 100 and not bool(result.converged)


def test_backtracking_returns_the_largest_armijo_step():
    def value(x):
        return (x**4).sum(-1)

    x = torch.tensor([[1.0], [2.0]], dtype=DT)
    d = torch.tensor([[-3.0], [-1.0]], dtype=DT)
    f0, slope = value(x), (4 * x**3 * d).sum(-1)
    s = _backtracking(value, x, d, f0, slope, armijo=0.25)
    for b in range(2):
        ok = lambda t: float(value(x[b] + t * d[b])) <= float(f0[b]) + 0.25 * t * float(slope[b])  # noqa: E731
        assert ok(float(s[b])) and (float(s[b]) == 1.0 or not ok(2 * float(s[b])))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"grad_tol": -1.0}, "grad_tol"),
        ({"grad_tol": 0.0}, "grad_tol"),
        ({"grad_tol": 1e-9, "x_rtol": 0.0}, "x_rtol"),
        ({"grad_tol": 1e-9, "max_iter": -1}, "max_iter"),
        ({"grad_tol": 1e-9, "patience": 0}, "patience"),
        ({"grad_tol": 1e-9, "norm_ord": 0}, "norm_ord"),
        ({"grad_tol": 1e-9, "armijo": 1.0}, "armijo"),
        ({"grad_tol": 1e-9, "shrink": 1.0}, "shrink"),
        ({"grad_tol": 1e-9, "max_backtracks": -2}, "max_backtracks"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs, name):
    def vgh(x):
        return (x * x).sum(-1), 2 * x + 1, 2 * torch.eye(2, dtype=DT).expand(*x.shape[:-1], 2, 2)

    with pytest.raises(ValueError, match=name):
        damped_newton(vgh, torch.ones(2, dtype=DT), **kwargs)


def test_bad_x0_and_shapes_are_refused_by_name():
    def vgh(x):
        return (x * x).sum(-1), 2 * x, 2 * torch.eye(2, dtype=DT)  # Hessian not batched

    with pytest.raises(ValueError, match="x0"):
        damped_newton(vgh, torch.ones(2, dtype=torch.long), grad_tol=1e-9)
    with pytest.raises(ValueError, match="x0"):
        damped_newton(vgh, torch.tensor([1.0, math.nan], dtype=DT), grad_tol=1e-9)
    with pytest.raises(ValueError, match="value_grad_hess"):
        damped_newton(vgh, torch.ones(3, 2, dtype=DT), grad_tol=1e-9)
    with pytest.raises(ValueError, match="direction"):
        _backtracking(lambda x: x.sum(-1), torch.ones(2, 1), torch.ones(2, 2), torch.ones(2), torch.ones(2))
