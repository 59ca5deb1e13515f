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


# --- claims ----------------------------------------------------------------------------------

def test_passing_claims_are_recorded_with_their_kind_and_written_as_json(tmp_path):
    claims = clkit.Claims("demo", directory=tmp_path)
    claims.check("equal", 1.0, 1.0 + 1e-9, 1e-6, kind="result")
    claims.check("relative", 100.0, 100.5, 1e-2, kind="result", relative=True)
    claims.check("bound holds", 2.0, 1.0, 0.0, kind="bound", relation="<=")
    claims.check("lower bound holds", 2.0, 3.0, 0.0, kind="bound", relation=">=")
    claims.check("loop = vectorised", 3.0, 3.0, 0.0, kind="identity")
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["all_passed"] and [c["name"] for c in record["claims"]] == [
        "equal", "relative", "bound holds", "lower bound holds", "loop = vectorised"]
    assert [c["kind"] for c in record["claims"]] == ["result", "result", "bound", "bound", "identity"]
    assert record["counts"] == {"result": 2, "bound": 2, "identity": 1, "derivation": 0}
    assert set(record["claims"][0]) >= {"name", "kind", "theory", "measured", "tolerance", "relation",
                                        "relative", "passed", "note"}
    assert record["summary"] == claims.summary() == "2 results, 2 bounds: all pass · 1 identity (guards)"


def test_kind_is_required_and_must_be_known():
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(TypeError, match="kind"):
        claims.check("a", 1.0, 1.0, 0.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="kind"):
        claims.check("a", 1.0, 1.0, 0.0, kind="theorem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bound needs relation"):
        claims.check("a", 1.0, 1.0, 0.5, kind="bound")
    assert len(claims) == 0


@pytest.mark.parametrize(
    "theory, measured, tol, relation, kind",
    [(1.0, 1.1, 0.05, "==", "result"), (1.0, 2.0, 0.5, "<=", "bound"), (2.0, 1.0, 0.5, ">=", "bound"),
     (1.0, math.nan, 0.5, "==", "result"), (1.0, math.inf, 0.5, "<=", "bound"), (0.0, 1e-12, 0.0, "==", "identity")],
)
def test_failing_claim_raises_and_is_recorded_as_failed(tmp_path, theory, measured, tol, relation, kind):
    claims = clkit.Claims("demo", directory=tmp_path)
    with pytest.raises(clkit.ClaimFailure, match=f"{kind} claim failed"):
        claims.check("wrong", theory, measured, tol, kind=kind, relation=relation)
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["all_passed"] is False and record["claims"][0]["passed"] is False
    assert "FAILED: wrong" in record["summary"]


@pytest.mark.parametrize(
    "theory, measured, tol, relation, relative, expected",
    [
        # "==": |measured - theory| <= tol, inclusive at the edge
        (1.0, 1.25, 0.25, "==", False, True), (1.0, 1.2500001, 0.25, "==", False, False),
        (1.0, 0.75, 0.25, "==", False, True), (1.0, 0.7499999, 0.25, "==", False, False),
        # relative: tol x |theory|, |theory| (not theory) for negative theory
        (-4.0, -5.0, 0.25, "==", True, True), (-4.0, -5.01, 0.25, "==", True, False),
        # "<=": measured <= theory + tol; ">=": measured >= theory - tol
        (2.0, 2.5, 0.5, "<=", False, True), (2.0, 2.51, 0.5, "<=", False, False),
        (2.0, -100.0, 0.0, "<=", False, True), (2.0, 1.5, 0.5, ">=", False, True),
        (2.0, 1.49, 0.5, ">=", False, False), (2.0, 100.0, 0.0, ">=", False, True),
        (10.0, 11.0, 0.1, "<=", True, True), (10.0, 11.01, 0.1, "<=", True, False),
        (10.0, 9.0, 0.1, ">=", True, True), (10.0, 8.99, 0.1, ">=", True, False),
        # non-finite values never pass
        (1.0, math.nan, 10.0, "==", False, False), (1.0, -math.inf, 0.0, "<=", False, False),
        (math.inf, math.inf, 0.0, "==", False, False), (1.0, 1.0, math.inf, "==", False, False),
    ],
)
def test_claim_passes_is_the_documented_inequality(theory, measured, tol, relation, relative, expected):
    assert clkit.claim_passes(theory, measured, tol, relation, relative) is expected


def test_claim_passes_rejects_an_unknown_relation():
    with pytest.raises(ValueError, match="relation"):
        clkit.claim_passes(1.0, 1.0, 0.0, "<", False)


def test_claims_reject_bad_arguments():
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("a", 1.0, 1.0, -1.0, kind="result")
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("a", 1.0, 1.0, math.inf, kind="result")
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("a", 1.0, 1.0, math.nan, kind="result")
    with pytest.raises(ValueError, match="relation"):
        claims.check("a", 1.0, 1.0, 0.5, kind="result", relation="<")
    with pytest.raises(ValueError, match="theory must be finite"):
        claims.check("a", math.inf, math.inf, 0.5, kind="result")
    with pytest.raises(ValueError, match="relative"):
        claims.check("a", 1.0, 1.0, 0.5, kind="result", relative=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        claims.check("  ", 1.0, 1.0, 0.5, kind="result")
    with pytest.raises(ValueError, match="scalar"):
        claims.check("a", torch.ones(2), 1.0, 0.5, kind="result")
    assert len(claims) == 0  # nothing refused was recorded
    claims.check("a", 1.0, 1.0, 0.0, kind="result")
    with pytest.raises(ValueError, match="already"):
        claims.check("a", 1.0, 1.0, 0.0, kind="result")
    for chapter in ("a/b", "a\\b", ""):
        with pytest.raises(ValueError, match="chapter"):
            clkit.Claims(chapter, directory=None)


@pytest.mark.parametrize("argument", ["theory", "measured", "tolerance"])
@pytest.mark.parametrize("bad", [
    "1.0", b"1", True, False, torch.tensor(True),
    np.True_,
])
def test_strings_and_booleans_are_refused_naming_the_argument(argument, bad):
    values = {"theory": 1.0, "measured": 1.0, "tolerance": 0.5}
    values[argument] = bad
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(ValueError, match=f"{argument} must be a real number"):
        claims.check("a", values["theory"], values["measured"], values["tolerance"], kind="result")
    assert len(claims) == 0


def test_numbers_and_one_element_tensors_are_accepted():
    claims = clkit.Claims("demo", directory=None)
    claim = claims.check("tensor", torch.tensor(2.0, dtype=torch.float64), np.float32(2.0), np.float64(0.1),
                         kind="result")
    assert (claim.theory, claim.measured, claim.tolerance) == (2.0, 2.0, pytest.approx(0.1))
    assert type(claim.theory) is float and type(claim.measured) is float
    claims.check("integers", 3, torch.tensor([3]), 1, kind="result")


@pytest.mark.parametrize(
    "theory, tol, relative",
    [(1.0, 1.0, False), (-2.0, 2.0, False), (1.0, 1e300, False), (0.5, 1.0, True), (-3.0, 1.5, True)],
)
def test_a_tolerance_of_at_least_theory_is_refused_without_a_note(theory, tol, relative):
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(ValueError, match=r"at least \|theory\|"):
        claims.check("loose", theory, theory, tol, kind="result", relative=relative)
    with pytest.raises(ValueError, match=r"at least \|theory\|"):
        claims.check("loose", theory, theory, tol, kind="bound", relation="<=", relative=relative, note="  ")
    assert len(claims) == 0
    claim = claims.check("loose", theory, theory, tol, kind="bound", relation="<=", relative=relative,
                         note="a crude bound: only its sign matters here")
    assert claim.passed and claim.note.startswith("a crude bound")


def test_a_tolerance_just_below_theory_and_any_tolerance_at_theory_zero_are_accepted():
    claims = clkit.Claims("demo", directory=None)
    assert claims.check("just below", 1.0, 0.01, 0.999, kind="result").passed
    assert claims.check("relative just below", -2.0, -0.01, 0.999, kind="result", relative=True).passed
    assert claims.check("zero theory", 0.0, 5.0, 10.0, kind="result").passed


def test_claim_tolerances_and_texts():
    claims = clkit.Claims("demo", directory=None)
    a = claims.check("a", -4.0, -4.1, 0.05, kind="result", relative=True)
    assert a.absolute_tolerance == pytest.approx(0.2) and a.relative_tolerance == pytest.approx(0.05)
    assert a.tolerance_text == "± 0.05 rel."
    b = claims.check("b", 0.0, 0.1, 0.5, kind="result")
    assert b.absolute_tolerance == 0.5 and b.relative_tolerance is None and b.tolerance_text == "± 0.5"
    c = claims.check("c", 2.0, 1.0, 0.0, kind="bound", relation="<=")
    d = claims.check("d", 2.0, 2.5, 0.1, kind="bound", relation=">=")
    assert c.tolerance_text == "≤ theory" and d.tolerance_text == "≥ theory − 0.1"
    assert clkit.median_relative_tolerance(claims.claims) == pytest.approx(0.05)
    assert clkit.median_relative_tolerance(()) is None


def test_summary_counts_results_and_bounds_apart_from_identities():
    claims = clkit.Claims("demo", directory=None)
    claims.check("r", 1.0, 1.0, 0.1, kind="result")
    claims.check("i1", 1.0, 1.0, 0.0, kind="identity")
    claims.check("i2", 1.0, 1.0, 0.0, kind="identity")
    assert claims.summary() == "1 result, 0 bounds: all pass · 2 identities (guards)"
    assert claims.count("identity") == 2 and claims.count("bound") == 0 and claims.all_passed
    with pytest.raises(ValueError, match="kind"):
        claims.count("results")
    with pytest.raises(clkit.ClaimFailure):
        claims.check("b", 1.0, 2.0, 0.5, kind="bound", relation="<=")
    assert claims.summary() == "1 result, 1 bound: 1/2 pass · 2 identities (guards) · FAILED: b"
    assert not claims.all_passed


def test_claims_table_renders_every_claim_grouped_by_kind(monkeypatch):
    claims = clkit.Claims("demo", directory=None)
    with pytest.raises(ValueError, match="no claims"):
        claims.table()
    claims.check("first $x^2$", 1.0, 1.0, 0.1, kind="result")
    claims.check("loop vs vectorised", 1.0, 1.0, 0.0, kind="identity")
    claims.check("second", 0.0, -1.0, 0.0, kind="bound", relation="<=")
    table = claims.table()
    assert table._repr_html_() is None  # outside the book: Markdown only
    monkeypatch.setenv("CLBOOK_SPHINX_BUILD", "1")
    html = table._repr_html_()
    assert html.count("<tr>") == 4 and html.count('class="kind-head"') == 3
    body = html[html.index("<tbody>"):]
    assert body.index("first") < body.index("second") < body.index("loop vs")  # result, bound, identity
    assert "\\(x^2\\)" in html and "../claims/demo.json" in html
    markdown = table._repr_markdown_().splitlines()
    assert markdown[2] == "| claim | kind | theory | measured | tolerance | pass |"
    assert [row.split(" | ")[1] for row in markdown[4:]] == ["result", "bound", "identity"]


def test_claims_directory_finds_the_enclosing_book(tmp_path, monkeypatch):
    monkeypatch.delenv("CLKIT_CLAIMS_DIR", raising=False)
    (tmp_path / "_config.yml").write_text("")
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "chapters").mkdir()
    monkeypatch.chdir(tmp_path / "chapters")
    assert clkit.claims_directory() == tmp_path.resolve() / "_build" / "claims"
    monkeypatch.setenv("CLKIT_CLAIMS_DIR", str(tmp_path / "elsewhere"))
    assert clkit.claims_directory() == tmp_path / "elsewhere"


def _normal(n: int, mean: float, sd: float, seed: int) -> torch.Tensor:
    gen = clkit.make_generator(seed, "cpu")
    return mean + sd * torch.randn(n, generator=gen, dtype=torch.float64)


def test_monte_carlo_claim_uses_n_standard_errors():
    samples = _normal(10_000, 0.0, 1.0, 0)
    estimate = clkit.monte_carlo_mean(samples)
    assert estimate.n == 10_000 and estimate.mean == pytest.approx(float(samples.mean()))
    assert estimate.stderr == pytest.approx(float(samples.std()) / 100)
    claim = clkit.Claims("mc", directory=None).check_monte_carlo("mean zero", 0.0, samples)
    assert claim.tolerance == pytest.approx(4 * estimate.stderr) and claim.kind == "result"
    assert "n = 10,000" in claim.note and "4 standard errors" in claim.note
    claim3 = clkit.Claims("mc", directory=None).check_monte_carlo("mean zero", 0.0, samples, n_se=3)
    assert claim3.tolerance == pytest.approx(3 * estimate.stderr)
    with pytest.raises(clkit.ClaimFailure):  # 1 is 100 standard errors away
        clkit.Claims("mc", directory=None).check_monte_carlo("mean one", 1.0, samples)
    # 5 standard errors away: fails at n_se = 4, passes at n_se = 6
    shifted = 10.0 + samples
    theory = float(shifted.mean()) + 5 * estimate.stderr
    with pytest.raises(clkit.ClaimFailure):
        clkit.Claims("mc", directory=None).check_monte_carlo("five se", theory, shifted)
    assert clkit.Claims("mc", directory=None).check_monte_carlo("five se", theory, shifted, n_se=6).passed


def test_monte_carlo_claim_needs_a_thousand_draws():
    assert clkit.MONTE_CARLO_MIN_DRAWS == 1000
    claims = clkit.Claims("mc", directory=None)
    with pytest.raises(ValueError, match="at least 1000 draws"):
        claims.check_monte_carlo("999", 100.0, _normal(999, 100.0, 0.01, 1))
    assert claims.check_monte_carlo("1000", 100.0, _normal(1000, 100.0, 0.01, 1)).passed
    # issue 11: theory 0 against 2 draws of N(100, 1e4) used to pass
    with pytest.raises(ValueError, match="draws"):
        claims.check_monte_carlo("two draws", 0.0, _normal(2, 100.0, 100.0, 2))


def test_monte_carlo_tolerance_must_resolve_the_value_claimed():
    assert clkit.MONTE_CARLO_MAX_REL_TOL == 0.1
    claims = clkit.Claims("mc", directory=None)
    samples = _normal(1600, 1.0, 1.0, 3)  # 4 se = 4 sd / 40 ~ 0.1
    tol = 4 * clkit.monte_carlo_mean(samples).stderr
    with pytest.raises(ValueError, match="use more draws"):
        claims.check_monte_carlo("too wide", 0.99 * tol / 0.1, samples)
    assert claims.check_monte_carlo("wide enough", 1.01 * tol / 0.1, samples).passed  # ~ the mean, 1
    # theory 0: measured against the samples' standard deviation, 4 / sqrt(n) <= 0.1 needs n >= 1600
    with pytest.raises(ValueError, match="standard deviation"):
        claims.check_monte_carlo("zero, 1500 draws", 0.0, _normal(1500, 0.0, 5.0, 4))
    assert claims.check_monte_carlo("zero, 1700 draws", 0.0, _normal(1700, 0.0, 5.0, 5)).passed
    with pytest.raises(ValueError, match="n_se"):
        claims.check_monte_carlo("n_se", 1.0, samples, n_se=0.5)
    with pytest.raises(ValueError, match="n_se"):
        claims.check_monte_carlo("n_se", 1.0, samples, n_se=True)  # type: ignore[arg-type]


def test_monte_carlo_bounds():
    claims = clkit.Claims("mc", directory=None)
    samples = _normal(10_000, 1.0, 1.0, 6)
    assert claims.check_monte_carlo("mean <= 1.02", 1.02, samples, kind="bound", relation="<=").passed
    with pytest.raises(clkit.ClaimFailure):
        claims.check_monte_carlo("mean <= 0.9", 0.9, samples, kind="bound", relation="<=")
    with pytest.raises(ValueError, match="bound needs relation"):
        claims.check_monte_carlo("bound ==", 1.0, samples, kind="bound")


def test_monte_carlo_mean_rejects_too_few_or_non_finite_draws():
    with pytest.raises(ValueError, match=r"^samples must hold at least 2 draws, got 1$"):
        clkit.monte_carlo_mean(torch.ones(1))
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=r"^samples contains non-finite values \(NaN or inf\)$"):
            clkit.monte_carlo_mean(torch.tensor([1.0, bad, 2.0]))
    two = clkit.monte_carlo_mean(torch.tensor([1.0, 3.0]))  # two draws are enough: sd sqrt(2), se 1
    assert (two.n, two.mean, two.stderr) == (2, 2.0, pytest.approx(1.0, rel=1e-15))
    # integer draws (a count, a list) are averaged in float64, not refused by torch's integer mean
    ints = clkit.monte_carlo_mean(torch.tensor([1, 2, 3, 4]))
    assert (ints.mean, ints.stderr) == (2.5, pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-15))
    assert clkit.monte_carlo_mean([0, 1, 1, 0]).mean == 0.5
    # float64 accumulation: float32 draws around 1e4 with a spread of 1e-3
    offset = torch.full((10_000,), 1e4, dtype=torch.float32)
    noise = torch.tensor([1e-3, -1e-3], dtype=torch.float32).repeat(5000)
    wide = clkit.monte_carlo_mean(offset + noise)
    exact = (offset + noise).double()
    assert wide.stderr == pytest.approx(float(exact.std()) / 100, rel=1e-9)
    estimate = clkit.monte_carlo_mean(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))  # every entry counts
    assert (estimate.n, estimate.mean) == (4, 3.0)
    assert estimate.stderr == pytest.approx(math.sqrt(14 / 3) / 2)  # sample variance (n - 1) / sqrt(4)
    assert str(estimate) == "3 ± 1.1 (n = 4)"


def _audit_chapter(stem, data):
    import audit_claims  # scripts/ is on sys.path (conftest)

    return audit_claims.audit_chapter(stem, data)


def test_the_audit_recomputes_verdicts_instead_of_trusting_them(tmp_path):
    claims = clkit.Claims("demo", directory=tmp_path)
    claims.check("r", 1.0, 1.02, 0.05, kind="result")
    claims.check("b", 2.0, 1.0, 0.0, kind="bound", relation="<=")
    data = json.loads((tmp_path / "demo.json").read_text())
    assert _audit_chapter("demo", data).problems == []
    forged = json.loads(json.dumps(data))
    forged["claims"][0]["measured"] = 1.2  # outside the tolerance, stored passed still True
    problems = _audit_chapter("demo", forged).problems
    assert any("disagrees" in p for p in problems) and any("claim failed: r" in p for p in problems)
    loose = json.loads(json.dumps(data))
    loose["claims"][0]["tolerance"] = 1.5  # a result that would accept 0, written past the guard
    assert any("tolerance >= |theory|" in p for p in _audit_chapter("demo", loose).problems)
    unknown = json.loads(json.dumps(data))
    unknown["claims"][1]["kind"] = "lemma"
    assert any("unknown kind" in p for p in _audit_chapter("demo", unknown).problems)
    only_identities = {"claims": [dict(data["claims"][0], kind="identity")]}
    assert any("no result or bound" in p for p in _audit_chapter("demo", only_identities).problems)


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
    with pytest.raises(ValueError, match=rf"(?<![\w]){argument}(?![\w])"):
        clkit.GaussianMixture(**kwargs)


def test_mixture_stores_tensors_in_the_dtype_of_the_means():
    # plain lists become tensors; weights and covariances follow the means' dtype
    mixture = clkit.GaussianMixture([0.25, 0.75], [[0.0, 1.0], [2.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]])
    for t in (mixture.weights, mixture.means, mixture.covariances):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    single = clkit.GaussianMixture([0.25, 0.75], torch.tensor([[0.0, 1.0], [2.0, 0.0]]), [[1.0, 0.0], [0.0, 2.0]])
    assert single.weights.dtype == single.covariances.dtype == single.means.dtype == torch.float32
    x, labels = single.sample(1, clkit.make_generator(0, "cpu"))  # n = 1 is a valid sample size
    assert x.shape == (1, 2) and labels.shape == (1,) and x.dtype == torch.float32


def test_mixture_sample_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n must be"):
        _mixture().sample(0, clkit.make_generator(0, "cpu"))


def test_every_public_name_is_documented():
    for name in clkit.__all__:
        obj = getattr(clkit, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name


# --- Gaussian mixtures: closed forms against independent routes ------------------------------------

def test_mixture_mean_and_covariance_match_the_law_of_total_covariance():
    # within + between decomposition, written independently of covariance()'s second-moment form
    mixture = _mixture()
    w, mu, cov = (t.numpy() for t in (mixture.weights, mixture.means, mixture.covariances))
    mean = sum(w[k] * mu[k] for k in range(3))
    within = sum(w[k] * cov[k] for k in range(3))
    between = sum(w[k] * np.outer(mu[k] - mean, mu[k] - mean) for k in range(3))
    np.testing.assert_allclose(mixture.mean().numpy(), mean, rtol=1e-14)
    np.testing.assert_allclose(mixture.covariance().numpy(), within + between, rtol=1e-13, atol=1e-15)


def test_mixture_properties_and_conversion():
    mixture = _mixture()
    assert (mixture.n_components, mixture.dim, mixture.dtype) == (3, 2, torch.float64)
    assert mixture.device == torch.device("cpu")
    single = mixture.to(dtype=torch.float32)
    assert single.dtype == torch.float32 and single.weights.dtype == single.covariances.dtype == torch.float32
    torch.testing.assert_close(single.covariance(), mixture.covariance().float())
    torch.testing.assert_close(mixture.to("cpu").means, mixture.means, rtol=0, atol=0)


def test_symmetric_two_component_default_variance_is_one_and_rejects_bad_input():
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    mixture = clkit.GaussianMixture.symmetric_two_component(mu)
    torch.testing.assert_close(mixture.covariances, torch.eye(2, dtype=torch.float64).expand(2, 2, 2))
    torch.testing.assert_close(mixture.weights, torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(mixture.mean(), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\bvariance\b"):
        clkit.GaussianMixture.symmetric_two_component(mu, variance=0.0)
    with pytest.raises(ValueError, match=r"\bmu\b"):
        clkit.GaussianMixture.symmetric_two_component(mu[None, :])


def test_mixture_components_are_sampled_with_their_own_mean_and_covariance():
    # per component, against the parameters (5 standard errors; the draws do not use covariance())
    mixture = _mixture()
    n = 60_000
    labels = torch.arange(3).repeat_interleave(n)
    x = mixture.sample_given(labels, clkit.make_generator(11, "cpu"))
    for k in range(3):
        xk = x[labels == k]
        se = torch.sqrt(torch.diagonal(mixture.covariances[k]) / n)
        assert ((xk.mean(0) - mixture.means[k]).abs() <= 5 * se).all()
        centred = xk - mixture.means[k]
        for i in range(2):
            for j in range(2):
                est = clkit.monte_carlo_mean(centred[:, i] * centred[:, j])
                assert abs(est.mean - float(mixture.covariances[k, i, j])) <= 5 * est.stderr


def test_mixture_log_prob_of_one_component_is_the_gaussian_density():
    # K = 1: log N(x; mu, Sigma) from its formula (no logsumexp, no weights)
    cov = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    mu = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    mixture = clkit.GaussianMixture(torch.ones(1, dtype=torch.float64), mu, cov)
    x = torch.tensor([[0.0, 0.0], [1.0, -2.0], [3.0, 1.0]], dtype=torch.float64)
    diff = x - mu
    maha = torch.einsum("ni,ij,nj->n", diff, torch.linalg.inv(cov), diff)
    expected = -0.5 * (maha + math.log(float(torch.linalg.det(cov))) + 2 * math.log(2 * math.pi))
    torch.testing.assert_close(mixture.log_prob(x), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n", [1.5, True, -1, "3"])
def test_mixture_sample_components_rejects_bad_sizes_and_bad_labels(n):
    mixture = _mixture()
    with pytest.raises(ValueError, match=r"\bn must be"):
        mixture.sample_components(n, clkit.make_generator(0, "cpu"))
    with pytest.raises(ValueError, match=r"\blabels\b"):
        mixture.sample_given(torch.zeros(2, 2, dtype=torch.long), clkit.make_generator(0, "cpu"))
    with pytest.raises(ValueError, match=r"\bx\b"):
        mixture.log_prob(torch.zeros(4, 3, dtype=torch.float64))


def test_monte_carlo_claim_edges_and_notes():
    samples = _normal(10_000, 5.0, 1.0, 7)
    claims = clkit.Claims("mc", directory=None)
    one = claims.check_monte_carlo("one se allowed", float(samples.mean()), samples, n_se=1, note="why")
    assert one.tolerance == pytest.approx(clkit.monte_carlo_mean(samples).stderr)
    assert one.note.startswith("why; Monte Carlo, n = 10,000, 1 standard errors")
    plain = claims.check_monte_carlo("no note", 5.0, samples)
    assert plain.note.startswith("Monte Carlo, n = 10,000") and ";" not in plain.note


def test_claims_directory_needs_both_book_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CLKIT_CLAIMS_DIR", raising=False)
    (tmp_path / "_config.yml").write_text("")  # a config without a table of contents: not a book
    monkeypatch.chdir(tmp_path)
    assert clkit.claims_directory() is None


def test_median_relative_tolerance_leaves_out_derivations():
    claims = clkit.Claims("demo", directory=None)
    claims.check("r", 2.0, 2.0, 0.2, kind="result")  # relative tolerance 0.1
    claims.check("d", 1.0, 1.0, 0.5, kind="derivation", note="numeric step")
    assert clkit.median_relative_tolerance(claims.claims) == pytest.approx(0.1)


def test_derivation_claims_keep_their_method_and_latex(tmp_path):
    claims = clkit.Claims("demo", directory=tmp_path)
    proved = claims.check("step", 0.0, 0.0, 0.0, kind="derivation", method="sympy: simplify", latex="a=a")
    numeric = claims.check("numeric step", 0.0, 1e-13, 1e-12, kind="derivation", method="numeric: 5 points")
    assert (proved.method, proved.latex, proved.proved, proved.tolerance_text) == ("sympy: simplify", "a=a", True, "exact")
    assert not numeric.proved and numeric.tolerance_text == "± 1e-12 (numeric)"
    stored = json.loads((tmp_path / "demo.json").read_text())["claims"]
    assert [(c["method"], c["latex"]) for c in stored] == [("sympy: simplify", "a=a"), ("numeric: 5 points", "")]
    assert claims.summary().endswith("2 derivation steps (1 proved by SymPy, 1 checked numerically only)")


def test_figure_overflow_measures_what_sticks_out_of_the_canvas():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clkit.use_style()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_xlabel("x")
    fig.canvas.draw()
    assert clkit.figure_overflow(fig) == 0.0
    # a legend anchored well below the axes: constrained layout does not make room for it
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6))
    fig.canvas.draw()
    assert clkit.figure_overflow(fig) > 0.2
    plt.close(fig)
