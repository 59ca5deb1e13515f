"""Unit tests of clkit's core: validation, devices and seeding, scale profiles, claims, mixtures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import clkit
from clkit._validation import check_positive_definite, check_probability_vector


# --- devices, seeding, scale -------------------------------------------------------------------

def test_default_device_is_cuda_when_available_else_cpu(monkeypatch):
    monkeypatch.delenv("CLKIT_DEVICE", raising=False)
    assert clkit.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("CLKIT_DEVICE", "cpu")
    assert clkit.default_device() == torch.device("cpu")


def test_same_seed_gives_same_numbers_and_different_seeds_differ():
    draw = lambda seed: torch.randn(5, generator=clkit.make_generator(seed, "cpu"))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_make_generator_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        clkit.make_generator(seed, "cpu")


def test_as_tensor_defaults_to_float64_and_keeps_tensor_dtype():
    assert clkit.as_tensor([1, 2]).dtype == torch.float64
    assert clkit.as_tensor(torch.ones(2, dtype=torch.float32)).dtype == torch.float32
    assert clkit.as_tensor(torch.ones(2, dtype=torch.int64)).dtype == torch.float64


@pytest.mark.parametrize("profile", ["smoke", "default", "large"])
def test_scale_profile_is_read_from_the_environment(monkeypatch, profile):
    monkeypatch.setenv("CLKIT_SCALE", profile)
    assert clkit.scale_profile() == profile
    assert clkit.by_scale(smoke=1, default=2, large=3) == {"smoke": 1, "default": 2, "large": 3}[profile]


def test_unknown_scale_profile_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CLKIT_SCALE", "huge")
    with pytest.raises(ValueError, match="CLKIT_SCALE"):
        clkit.scale_profile()


# --- claims ------------------------------------------------------------------------------------

def test_passing_claims_are_recorded_and_written_as_json(tmp_path):
    claims = clkit.Claims("demo", directory=tmp_path)
    claims.check("equal", 1.0, 1.0 + 1e-9, 1e-6)
    claims.check("relative", 100.0, 100.5, 1e-2, relative=True)
    claims.check("bound holds", 2.0, 1.0, 0.0, relation="<=")
    claims.check("lower bound holds", 2.0, 3.0, 0.0, relation=">=")
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["all_passed"] and [c["name"] for c in record["claims"]] == [
        "equal", "relative", "bound holds", "lower bound holds"]
    assert set(record["claims"][0]) >= {"name", "theory", "measured", "tolerance", "passed"}


@pytest.mark.parametrize(
    "theory, measured, tol, relation",
    [(1.0, 1.1, 0.05, "=="), (1.0, 2.0, 0.5, "<="), (2.0, 1.0, 0.5, ">="), (1.0, math.nan, 1.0, "==")],
)
def test_failing_claim_raises_and_is_recorded_as_failed(tmp_path, theory, measured, tol, relation):
    claims = clkit.Claims("demo", directory=tmp_path)
    with pytest.raises(clkit.ClaimFailure, match="claim failed"):
        claims.check("wrong", theory, measured, tol, relation=relation)
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["all_passed"] is False and record["claims"][0]["passed"] is False


def test_claims_reject_bad_arguments():
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("a", 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="relation"):
        claims.check("a", 1.0, 1.0, 1.0, relation="<")
    claims.check("a", 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="already"):
        claims.check("a", 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="chapter"):
        clkit.Claims("a/b", directory=None)


def test_claims_table_renders_every_claim():
    claims = clkit.Claims("demo", directory=None)
    claims.check("first", 1.0, 1.0, 0.1)
    claims.check("second", 0.0, -1.0, 0.0, relation="<=")
    table = claims.table()
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and "first" in html and "second" in html
    assert table._repr_markdown_().splitlines()[0] == "| claim | theory | measured | tolerance | pass |"


def test_claims_directory_finds_the_enclosing_book(tmp_path, monkeypatch):
    monkeypatch.delenv("CLKIT_CLAIMS_DIR", raising=False)
    (tmp_path / "_config.yml").write_text("")
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "chapters").mkdir()
    monkeypatch.chdir(tmp_path / "chapters")
    assert clkit.claims_directory() == tmp_path.resolve() / "_build" / "claims"
    monkeypatch.setenv("CLKIT_CLAIMS_DIR", str(tmp_path / "elsewhere"))
    assert clkit.claims_directory() == tmp_path / "elsewhere"


def test_monte_carlo_claim_uses_four_standard_errors(tmp_path):
    samples = torch.randn(10_000, generator=clkit.make_generator(0, "cpu"), dtype=torch.float64)
    estimate = clkit.monte_carlo_mean(samples)
    assert estimate.stderr == pytest.approx(float(samples.std()) / 100)
    claim = clkit.Claims("mc", directory=None).check_monte_carlo("mean zero", 0.0, samples)
    assert claim.tolerance == pytest.approx(4 * estimate.stderr)
    with pytest.raises(clkit.ClaimFailure):
        clkit.Claims("mc", directory=None).check_monte_carlo("mean one", 1.0, samples)


# --- validation ------------------------------------------------------------------------------

def test_probability_vector_and_positive_definite_checks_name_the_argument():
    with pytest.raises(ValueError, match="weights must sum to 1"):
        check_probability_vector("weights", torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        check_probability_vector("weights", torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        check_positive_definite("cov", torch.diag(torch.tensor([1.0, 0.0])))
    with pytest.raises(ValueError, match="cov must be symmetric"):
        check_positive_definite("cov", torch.tensor([[1.0, 0.5], [0.0, 1.0]]))


# --- Gaussian mixtures -------------------------------------------------------------------------

def _mixture(dtype=torch.float64) -> clkit.GaussianMixture:
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=dtype)
    means = torch.tensor([[2.0, 0.0], [0.0, -1.0], [-1.0, 1.5]], dtype=dtype)
    a = torch.tensor([[[1.0, 0.0], [0.3, 0.5]], [[0.7, 0.0], [0.0, 1.2]], [[0.4, 0.0], [-0.2, 0.9]]], dtype=dtype)
    return clkit.GaussianMixture(weights, means, a @ a.transpose(-1, -2))


def test_mixture_log_prob_matches_scipy():
    mixture = _mixture()
    x = torch.randn(50, 2, dtype=torch.float64, generator=clkit.make_generator(1, "cpu"))
    reference = np.log(sum(
        w * multivariate_normal(m, c).pdf(x.numpy())
        for w, m, c in zip(mixture.weights.numpy(), mixture.means.numpy(), mixture.covariances.numpy())
    ))
    np.testing.assert_allclose(mixture.log_prob(x).numpy(), reference, rtol=1e-12)


def test_mixture_samples_match_closed_form_moments_within_five_standard_errors():
    mixture = _mixture()
    n = 200_000
    x, labels = mixture.sample(n, clkit.make_generator(2, "cpu"))
    assert x.shape == (n, 2) and labels.shape == (n,) and x.dtype == torch.float64
    # component frequencies: binomial standard errors
    freq = torch.bincount(labels, minlength=3).double() / n
    se_freq = torch.sqrt(mixture.weights * (1 - mixture.weights) / n)
    assert ((freq - mixture.weights).abs() <= 5 * se_freq).all()
    # mean of each coordinate: standard error from the closed-form total covariance
    se_mean = torch.sqrt(torch.diagonal(mixture.covariance()) / n)
    assert ((x.mean(0) - mixture.mean()).abs() <= 5 * se_mean).all()
    # second moments of each coordinate pair against the closed-form covariance
    centred = x - mixture.mean()
    for i in range(2):
        for j in range(2):
            prod = centred[:, i] * centred[:, j]
            est = clkit.monte_carlo_mean(prod)
            assert abs(est.mean - float(mixture.covariance()[i, j])) <= 5 * est.stderr


def test_mixture_shared_covariance_is_broadcast_and_flagged():
    mixture = clkit.GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.eye(2))
    assert mixture.covariances.shape == (2, 2, 2) and mixture.shared_covariance
    assert not _mixture().shared_covariance


def test_symmetric_two_component_mixture():
    mu = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    mixture = clkit.GaussianMixture.symmetric_two_component(mu, variance=2.0)
    assert torch.equal(mixture.means, torch.stack([-mu, mu]))
    assert torch.allclose(mixture.covariance(), 2.0 * torch.eye(3, dtype=torch.float64) + torch.outer(mu, mu))


def test_mixture_keeps_dtype_and_is_deterministic():
    mixture = _mixture(torch.float32)
    assert mixture.sample(10, clkit.make_generator(0, "cpu"))[0].dtype == torch.float32
    a = mixture.sample(100, clkit.make_generator(7, "cpu"))[0]
    b = mixture.sample(100, clkit.make_generator(7, "cpu"))[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], covariances=[[1.0]]), "weights"),
        (dict(weights=[0.5, 0.5, 0.0], means=[[0.0], [1.0]], covariances=[[1.0]]), "weights"),
        (dict(weights=[0.5, 0.5], means=[0.0, 1.0], covariances=[[1.0]]), "means"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covariances=[[-1.0]]), "covariances"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covariances=[[[1.0]]]), "covariances"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [float("nan")]], covariances=[[1.0]]), "means"),
    ],
)
def test_mixture_rejects_bad_parameters_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        clkit.GaussianMixture(**kwargs)


def test_mixture_sample_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n must be"):
        _mixture().sample(0, clkit.make_generator(0, "cpu"))


def test_every_public_name_is_documented():
    for name in clkit.__all__:
        obj = getattr(clkit, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
