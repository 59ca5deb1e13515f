"""clkit.quadrature: the tensor Gauss-Hermite rule against scipy's rules and integrators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch

import clkit


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_one_dimensional_rule_is_scipys_probabilists_hermite_rule(n):
    nodes, weights = clkit.gauss_hermite_grid(1, n)
    x, w = scipy.special.roots_hermitenorm(n)  # weight e^{-x^2/2}: divide by sqrt(2 pi)
    order = np.argsort(x)
    np.testing.assert_allclose(nodes[:, 0].numpy(), x[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), w[order] / math.sqrt(2 * math.pi), rtol=1e-12, atol=0)


def test_tensor_rule_is_exact_for_gaussian_moments_up_to_degree_2n_minus_1():
    n = 4
    nodes, weights = clkit.gauss_hermite_grid(2, n)
    assert nodes.shape == (n**2, 2) and weights.shape == (n**2,)
    for p in range(2 * n):
        for q in range(2 * n - p):
            exact = (scipy.stats.norm.moment(p) if p else 1.0) * (scipy.stats.norm.moment(q) if q else 1.0)
            got = float(weights @ (nodes[:, 0] ** p * nodes[:, 1] ** q))
            assert got == pytest.approx(exact, abs=1e-11)
    # degree 2n in one coordinate is not integrated exactly: the rule is not a re-typing of the moments
    assert abs(float(weights @ nodes[:, 0] ** (2 * n)) - scipy.stats.norm.moment(2 * n)) > 1.0


def test_expectation_of_a_smooth_function_matches_scipy_dblquad():
    def f_np(a, b):
        return math.log1p(math.exp(0.7 * a - 0.4 * b)) * math.exp(-(a * a + b * b) / 2) / (2 * math.pi)

    exact, err = scipy.integrate.dblquad(f_np, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-13)
    got = clkit.gauss_hermite_expectation(
        lambda eta: torch.nn.functional.softplus(0.7 * eta[:, 1] - 0.4 * eta[:, 0]), 2, 40)
    assert float(got) == pytest.approx(exact, abs=1e-10 + 10 * err)


def test_dim_zero_dtype_device_and_copies():
    nodes, weights = clkit.gauss_hermite_grid(0, 7)
    assert nodes.shape == (1, 0) and float(weights) == 1.0
    nodes, weights = clkit.gauss_hermite_grid(2, 3, dtype=torch.float32)
    assert nodes.dtype == weights.dtype == torch.float32
    nodes.zero_()  # the cached rule is not modified through a returned copy
    assert float(clkit.gauss_hermite_grid(2, 3)[0].abs().max()) > 0


@pytest.mark.parametrize("dim, n, argument", [(-1, 3, "dim"), (1.5, 3, "dim"), (2, 0, "n"), (2, True, "n")])
def test_bad_input_raises_value_error_naming_the_argument(dim, n, argument):
    with pytest.raises(ValueError, match=argument):
        clkit.gauss_hermite_grid(dim, n)


def test_expectation_rejects_a_function_of_the_wrong_shape():
    with pytest.raises(ValueError, match="f must return"):
        clkit.gauss_hermite_expectation(lambda eta: eta[:3, 0], 1, 5)
