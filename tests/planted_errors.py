"""The planted errors: wrong variants of the formulas each chapter rests on.

Each :class:`PlantedError` replaces one attribute of a clkit module by a wrong variant (a constant
a few per cent off, a dropped term, a factor 2 in a bound, the wrong subspace, an optimistic
condition, a sign). ``tests/test_planted_errors.py`` plants each one, executes its chapter at smoke
scale, and asserts that the chapter *fails through one of its own claims* (a ``ClaimFailure``),
not through an unrelated crash. A planted error that a chapter cannot catch is a finding about the
chapter: strengthen the chapter, never drop the mutant.

Writing one: ``target`` is ``"clkit.<module>.<name>"``; ``make`` receives the original object and
returns the wrong variant (usually a wrapper that perturbs the original's result, or a
re-implementation with one deliberate mistake). The replacement is installed on the module, on
``clkit`` itself and on every other clkit module that imported the same object, before the
chapter's first cell runs.

This is the one list of planted errors; each chapter's section is kept by that chapter's author.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["PlantedError", "PLANTED", "plant", "by_chapter"]


@dataclass(frozen=True)
class PlantedError:
    id: str
    chapter: str  # file stem under book/chapters
    target: str  # "clkit.module.attribute"
    description: str  # what is wrong, in the words of the chapter's formula
    make: Callable[[Any], Any]  # original -> wrong variant


def scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant: the original's (scalar or tensor) result times ``factor``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs) * factor

        return wrong

    return make


def shifted(offset: float) -> Callable[[Any], Any]:
    """Wrong variant: the original's result plus ``offset``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs) + offset

        return wrong

    return make


# --------------------------------------------------------------------------------------------
# 01 setting
# --------------------------------------------------------------------------------------------
def _temperature_off(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(z1: Any, z2: Any, temperature: float = 0.5, **kwargs: Any) -> Any:
        return original(z1, z2, temperature=1.05 * temperature, **kwargs)

    return wrong


def _collapse_2n(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(n_pairs: Any) -> Any:
        import sympy

        value = original(n_pairs)  # validates; the mistake: log(2N) instead of log(2N - 1)
        return sympy.log(2 * n_pairs) if isinstance(value, sympy.Basic) else math.log(2 * n_pairs)

    return wrong


def _bound_2n_minus_1(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(n_pairs: Any, temperature: Any) -> Any:
        import sympy

        value = original(n_pairs, temperature)  # the mistake: 2N - 1 negatives instead of 2N - 2
        if isinstance(value, sympy.Basic):
            return sympy.log(1 + (2 * n_pairs - 1) * sympy.exp(-2 / temperature))
        return math.log1p((2 * n_pairs - 1) * math.exp(-2 / temperature))

    return wrong


def _noise_inflated(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(self: Any, n: int, generator: Any) -> Any:
        x, labels = original(self, n, generator)
        centre = self.means[labels]
        return centre + 1.05 * (x - centre), labels  # covariance 10 % too large

    return wrong


PLANTED_01: list[PlantedError] = [
    PlantedError("01-ntxent-temperature-5pct", "01_setting", "clkit.losses.info_nce",
                 "NT-Xent computed at 1.05 tau", _temperature_off),
    PlantedError("01-collapse-log-2n", "01_setting", "clkit.losses.info_nce_collapse_value",
                 "collapse value log(2N) instead of log(2N - 1)", _collapse_2n),
    PlantedError("01-bound-2n-minus-1", "01_setting", "clkit.losses.info_nce_lower_bound",
                 "lower bound counts 2N - 1 negatives instead of 2N - 2", _bound_2n_minus_1),
    PlantedError("01-mixture-covariance-10pct", "01_setting", "clkit.mixtures.GaussianMixture.sample",
                 "mixture sampler's covariance 10 % too large", _noise_inflated),
]

# --------------------------------------------------------------------------------------------
# 02 projection heads
# --------------------------------------------------------------------------------------------
def _rank_one_slope_without_last_term(original: Callable[..., Any]) -> Callable[..., Any]:
    """g(tau) of the exact-threshold lemma with the term 2v|mu|^2/(k^2(1 + e^q)) dropped."""

    @functools.wraps(original)
    def wrong(tau: Any, sigma2: Any, mu_norm2: Any) -> Any:
        import math

        import sympy

        import numpy as np

        symbolic = any(isinstance(x, sympy.Basic) for x in (tau, sigma2, mu_norm2))
        arrays = any(isinstance(x, np.ndarray) for x in (tau, sigma2, mu_norm2))
        exp = sympy.exp if symbolic else (lambda x: np.exp(np.minimum(x, 700.0))) if arrays else math.exp
        w = 1 + sigma2
        s = w + mu_norm2
        c = 1 / (2 * tau * s)
        k = 1 + 2 * c * 2 * w
        q = 4 * c * mu_norm2 / k
        return original(tau, sigma2, mu_norm2) - c / s * 2 * 2 * w * mu_norm2 / (k**2 * (1 + exp(q)))

    return wrong


def _margin_without_alpha_noise(original: Callable[..., Any]) -> Callable[..., Any]:
    """Max-margin limit with the noise of the signal coordinate dropped: sqrt(alpha^2 + r^2) -> r."""

    @functools.wraps(original)
    def wrong(alpha: float, r: float, delta: float, m: float) -> float:
        import math

        from scipy.optimize import brentq

        from clkit.projection import _positive_part_second_moment

        gap = lambda kappa: delta * _positive_part_second_moment(kappa - alpha * m, r) - r * r  # noqa: E731
        if gap(0.0) >= 0:
            return -math.inf
        hi = 1.0
        while gap(hi) < 0:
            hi *= 2
        return brentq(gap, 0.0, hi, xtol=1e-15)

    return wrong


def _logdet_coefficient_one(original: Callable[..., Any]) -> Callable[..., Any]:
    """Closed form of C with -log det(I + 2cvM) instead of -1/2 log det(I + 2cvM)."""

    @functools.wraps(original)
    def wrong(W: Any, mu: Any, sigma2: Any, tau: Any) -> Any:
        import torch

        M = W.transpose(-2, -1) @ W
        a = torch.diagonal(M, dim1=-2, dim2=-1).sum(-1)
        b = (mu @ M @ mu) if M.dim() == 2 else (mu.unsqueeze(-2) @ M @ mu.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        s = (1 + sigma2) * a + b
        c = 1 / (2 * tau * s)
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        A = eye + (2 * c * 2 * (1 + sigma2))[..., None, None] * M
        return original(W, mu, sigma2, tau) - 0.5 * torch.logdet(A)

    return wrong


PLANTED_02: list[PlantedError] = [
    PlantedError(id="02-tau-star-2pct", chapter="02_projection_heads", target="clkit.projection.tau_star",
                 description="tau* 2 % too large (reaches the SymPy step u(|mu|^2) = log(1 + 2 sigma2) at tau*)",
                 make=scaled(1.02)),
    PlantedError(id="02-exact-threshold-1pct", chapter="02_projection_heads",
                 target="clkit.projection.exact_threshold", description="tau_e 1 % too large",
                 make=scaled(1.01)),
    PlantedError(id="02-rank-one-slope-dropped-term", chapter="02_projection_heads",
                 target="clkit.projection.rank_one_derivative",
                 description="slope g(tau) of the lemma without its last term (the negative pairs' mixture term)",
                 make=_rank_one_slope_without_last_term),
    PlantedError(id="02-max-margin-dropped-noise", chapter="02_projection_heads",
                 target="clkit.projection._margin_at",
                 description="max-margin limit with sqrt(alpha^2 + r^2) Z replaced by r Z (signal noise dropped)",
                 make=_margin_without_alpha_noise),
    PlantedError(id="02-logdet-factor-2", chapter="02_projection_heads",
                 target="clkit.projection.population_loss",
                 description="closed form of C with the log-determinant's coefficient 1 instead of 1/2",
                 make=_logdet_coefficient_one),
    PlantedError(id="02-exact-threshold-array-1pct", chapter="02_projection_heads",
                 target="clkit.projection._exact_threshold_array",
                 description="tau_e 1 % too large on the array path only (the map), the scalar path intact",
                 make=scaled(1.01)),
    PlantedError(id="02-x-star-1pct", chapter="02_projection_heads",
                 target="clkit.projection.first_order_optimum",
                 description="surrogate optimum x* 1 % too large", make=scaled(1.01)),
]

# --------------------------------------------------------------------------------------------
# 03 Fisher subspace
# --------------------------------------------------------------------------------------------
def _fisher_without_sigma_inverse(original: Callable[..., Any]) -> Callable[..., Any]:
    """S_F = span{mu_k} instead of span{Sigma^-1 mu_k}: the covariance is replaced by I."""

    @functools.wraps(original)
    def wrong(weights: Any, means: Any, cov: Any, **kwargs: Any) -> Any:
        import torch

        eye = torch.eye(means.shape[1], dtype=means.dtype, device=means.device)
        return original(weights, means, eye, **kwargs)

    return wrong


def _log_mgf_full_quadratic(original: Callable[..., Any]) -> Callable[..., Any]:
    """log E e^{u.y} with u^T Sigma u instead of u^T Sigma u / 2 (a factor 2 in the closed form)."""

    @functools.wraps(original)
    def wrong(u: Any, weights: Any, means: Any, sigma: Any) -> Any:
        if getattr(u, "is_Matrix", False):  # SymPy column vector
            extra = (u.T @ sigma @ u)[0, 0] / 2
        else:
            extra = 0.5 * ((u @ sigma) * u).sum(-1)
        return original(u, weights, means, sigma) + extra

    return wrong


def _uncentred_scatter(original: Callable[..., Any]) -> Callable[..., Any]:
    """B_c = sum_k w_k mu_k mu_k^T: the centring by the overall mean is dropped."""

    @functools.wraps(original)
    def wrong(weights: Any, means: Any) -> Any:
        from clkit.fisher import _outer, _weighted_sum

        mean = _weighted_sum(list(weights), list(means))
        return original(weights, means) + _outer(mean, mean)

    return wrong


def _gradient_sign(original: Callable[..., Any]) -> Callable[..., Any]:
    """grad q(N) = (Sigma_tot N S2 + S2 N Sigma_tot)/2 + B_c: the sign of the linear term flipped."""

    @functools.wraps(original)
    def wrong(n: Any, sigma_tot: Any, s2: Any, b_c: Any) -> Any:
        return original(n, sigma_tot, s2, b_c) + 2 * b_c

    return wrong


def _clip_quadratic_term_3pct(original: Callable[..., Any]) -> Callable[..., Any]:
    """CLIP derivatives as if 1/2 tr(N S_T N^T S2_V) had coefficient 0.515: gradient and Hessian agree,
    so Newton converges to the wrong point and reports a zero gradient there."""

    @functools.wraps(original)
    def wrong(n: Any, mixture_v: Any, mixture_t: Any, n_quadrature: int) -> Any:
        import torch

        from clkit.fisher import mixture_moments

        value, grad, hess = original(n, mixture_v, mixture_t, n_quadrature)
        s2_v, sigma_t = mixture_moments(mixture_v)["s2"], mixture_moments(mixture_t)["sigma"]
        q = n.numel()
        units = torch.eye(q, dtype=n.dtype, device=n.device).reshape(q, *n.shape)
        quad = torch.einsum("pab,bc,qdc,da->pq", units, sigma_t, units, s2_v)
        return value, grad + 0.03 * (s2_v @ n @ sigma_t), hess + 0.015 * (quad + quad.T)

    return wrong


def _minibatch_gradient_without_partner_term(original: Callable[..., Any]) -> Callable[..., Any]:
    """The by-hand minibatch InfoNCE gradient with only the anchor side X^T dL/dZ (the partner side
    X_hat^T dL/dZ_hat dropped): Adam then follows a field that is not the loss's gradient."""

    @functools.wraps(original)
    def wrong(x: Any, x_hat: Any, a: Any) -> Any:
        import torch

        z, z_hat = x @ a, x_hat @ a
        n = z.shape[1]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        p = torch.softmax((z @ z_hat.transpose(1, 2)).masked_fill(eye, -math.inf), dim=-1)
        return x.transpose(1, 2) @ ((p @ z_hat - z_hat) / n)

    return wrong


PLANTED_03: list[PlantedError] = [
    PlantedError(id="03-fisher-subspace-without-sigma-inverse", chapter="03_fisher_subspace",
                 target="clkit.fisher.fisher_subspace",
                 description="wrong subspace: span{mu_k} instead of span{Sigma^-1 mu_k}",
                 make=_fisher_without_sigma_inverse),
    PlantedError(id="03-attraction-3pct", chapter="03_fisher_subspace",
                 target="clkit.fisher.attraction_term",
                 description="attraction term E[x^T M x_hat] 3 % too large", make=scaled(1.03)),
    PlantedError(id="03-log-mgf-factor-2", chapter="03_fisher_subspace",
                 target="clkit.fisher.mixture_log_mgf",
                 description="log-MGF of the mixture with u^T Sigma u instead of u^T Sigma u / 2",
                 make=_log_mgf_full_quadratic),
    PlantedError(id="03-between-class-scatter-uncentred", chapter="03_fisher_subspace",
                 target="clkit.fisher.between_class_scatter",
                 description="between-class scatter without centring (sum_k w_k mu_k mu_k^T)",
                 make=_uncentred_scatter),
    PlantedError(id="03-small-delta-gradient-sign", chapter="03_fisher_subspace",
                 target="clkit.fisher.small_delta_gradient",
                 description="first-order condition of the small-delta expansion with +B_c",
                 make=_gradient_sign),
    PlantedError(id="03-centred-m1-5pct", chapter="03_fisher_subspace",
                 target="clkit.fisher.centred_small_delta_term",
                 description="centred leading term Sigma_tot^-1 B_c Sigma_tot^-1 5 % too large",
                 make=scaled(1.05)),
    PlantedError(id="03-clip-derivatives-quadratic-3pct", chapter="03_fisher_subspace",
                 target="clkit.fisher._clip_derivatives",
                 description="CLIP Newton's gradient and Hessian with the quadratic term 3 % too large "
                             "(consistent, so only the independent autograd gradient can see it)",
                 make=_clip_quadratic_term_3pct),
    PlantedError(id="03-minibatch-gradient-partner-term-dropped", chapter="03_fisher_subspace",
                 target="clkit.fisher._batched_pair_info_nce_gradient",
                 description="minibatch InfoNCE gradient by hand without the partner term X_hat^T dL/dZ_hat",
                 make=_minibatch_gradient_without_partner_term),
]

# --------------------------------------------------------------------------------------------
# 04 alpha-CL
# --------------------------------------------------------------------------------------------
def _uniform_mean_half_variance(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(v_conditional_mean: Any, v_total: Any, n: Any) -> Any:
        return v_conditional_mean - v_total / (2 * n)  # coefficient 1/(2N) instead of 1/N

    return wrong


def _flow_matrix_without_b(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(a: Any, b: Any, w: Any) -> Any:
        return original(a, 0 * b, w)  # drops E^T B_E, the roughness term of J

    return wrong


def _bound_without_tau_term(original: Callable[..., Any]) -> Callable[..., Any]:
    # roughness_bound_batch is the code path of every roughness bound (roughness_bound calls it)
    def wrong(self: Any, w: Any, activation: str = "relu", tau: Any = None) -> Any:
        return self.roughness_bound_terms_batch(w, activation, tau)[..., 0]  # gate term only

    return wrong


def _gated_mean_3pct(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu") -> Any:
        m, s = original(self, w, activation)
        return 1.03 * m, s

    return wrong


def _eigengap_smallest_other(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(a: Any, w: Any) -> tuple[float, float]:
        import torch

        w_hat = w / w.norm()
        lam = float(w_hat @ a @ w_hat)
        basis = torch.linalg.qr(torch.cat([w_hat[:, None], torch.eye(len(w), dtype=a.dtype)], 1))[0][:, 1:len(w)]
        return lam, lam - float(torch.linalg.eigvalsh(basis.T @ a @ basis).min())  # smallest, not largest

    return wrong


PLANTED_04: list[PlantedError] = [
    PlantedError(id="04-uniform-mean-half-variance", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.uniform_alpha_expected_covariance",
                 description="E C_N = V[E[x|x0]] - V[x]/(2N): wrong coefficient of the finite-N term",
                 make=_uniform_mean_half_variance),
    PlantedError(id="04-infonce-alpha-2pct", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.info_nce_alpha_from_distances",
                 description="InfoNCE's alpha 2 % too large (2.04 N^2 instead of 2 N^2)",
                 make=scaled(1.02)),
    PlantedError(id="04-flow-matrix-drops-b", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.linearised_flow_matrix",
                 description="linearised flow J without the roughness term E^T B_E",
                 make=_flow_matrix_without_b),
    PlantedError(id="04-bound-drops-tau-term", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.roughness_bound_batch",
                 description="roughness bound R without its tau (kernel) term",
                 make=_bound_without_tau_term),
    PlantedError(id="04-bound-factor-2", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.roughness_bound_batch",
                 description="roughness bound R twice too large (a valid but loose bound)",
                 make=scaled(2.0)),
    PlantedError(id="04-gated-mean-3pct", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.gated_moments",
                 description="conditional mean m_k of the gated data 3 % too large",
                 make=_gated_mean_3pct),
    PlantedError(id="04-eigengap-smallest-other", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.eigengap",
                 description="eigengap against the smallest other eigenvalue (an optimistic condition)",
                 make=_eigengap_smallest_other),
]

# --------------------------------------------------------------------------------------------
# 05 ArCL
# --------------------------------------------------------------------------------------------
def _arctan_argument_scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant of optimal_risk(a, s): arctan(factor |s| / |a|) / pi (numbers, tensors, SymPy)."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(a: Any, s: Any) -> Any:
            return original(a, s * factor)

        return wrong

    return make


def _ar_loss_without_square(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of ar_loss: (theta_+ - theta_-) w_2^2, the square of the width dropped."""

    @functools.wraps(original)
    def wrong(weights: Any, theta_range: Any) -> Any:
        lo, hi = (float(v) for v in theta_range)
        return original(weights, theta_range) / (hi - lo)

    return wrong


def _range_off_by_one(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of expected_squared_range: the range of m - 1 normals instead of m."""

    @functools.wraps(original)
    def wrong(m: int, **kwargs: Any) -> Any:
        return original(m - 1, **kwargs)

    return wrong


PLANTED_05: list[PlantedError] = [
    PlantedError(id="05-align-2pct", chapter="05_arcl", target="clkit.arcl.alignment_loss",
                 description="alignment loss 2 w_2^2 Var(theta) 2 % too large", make=scaled(1.02)),
    PlantedError(id="05-risk-arctan-coef", chapter="05_arcl", target="clkit.arcl.optimal_risk",
                 description="optimal 0-1 risk arctan(1.05 |s|/|a|)/pi: coefficient 5 % off",
                 make=_arctan_argument_scaled(1.05)),
    PlantedError(id="05-first-moment-half", chapter="05_arcl", target="clkit.arcl.ar_first_moment",
                 description="E sup|f(A1 X) - f(A2 X)| halved: an optimistic factor 2 in the bound",
                 make=scaled(0.5)),
    PlantedError(id="05-ar-loss-no-square", chapter="05_arcl", target="clkit.arcl.ar_loss",
                 description="L_AR = (theta_+ - theta_-) w_2^2: square of the width dropped",
                 make=_ar_loss_without_square),
    PlantedError(id="05-range-off-by-one", chapter="05_arcl",
                 target="clkit.arcl.expected_squared_range",
                 description="E R_m^2 of m - 1 normals instead of m", make=_range_off_by_one),
    PlantedError(id="05-head-risk-shift", chapter="05_arcl", target="clkit.arcl.head_risk",
                 description="0-1 risk of a head 0.005 too large", make=shifted(0.005)),
    PlantedError(id="05-logistic-risk-1pct", chapter="05_arcl",
                 target="clkit.arcl.logistic_risk_by_conditioning",
                 description="logistic risk by conditioning 1 % too large", make=scaled(1.01)),
    PlantedError(id="05-heads-5pct", chapter="05_arcl", target="clkit.arcl.optimal_logistic_heads",
                 description="optimal logistic heads 5 % too large", make=scaled(1.05)),
]

# --------------------------------------------------------------------------------------------
# 06 generalization
# --------------------------------------------------------------------------------------------
def _rho_r_coefficient_scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant of rho_max: the coefficient of R_eps / min p times ``factor``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            if len(args) >= 8:
                args = (*args[:7], args[7] * factor, *args[8:])
            else:
                kwargs = {**kwargs, "r_coefficient": kwargs.get("r_coefficient", 1) * factor}
            return original(*args, **kwargs)

        return wrong

    return make


def _rho_sigma_term_halved(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of rho_max: (1 - sigma) in place of 2 (1 - sigma) (an optimistic condition)."""

    @functools.wraps(original)
    def wrong(sigma: Any, *args: Any, **kwargs: Any) -> Any:
        return original(sigma, *args, **kwargs) - (1 - sigma)

    return wrong


def _threshold_without_sqrt(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of divergence_threshold: r^2 (1 - rho - Delta/2), the sqrt(2 rho) term dropped."""

    @functools.wraps(original)
    def wrong(rho: Any, delta_mu: Any, r: Any) -> Any:
        return original(0 * rho, delta_mu, r) - r**2 * rho

    return wrong


def _threshold_without_deficit(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of divergence_threshold: Delta_mu ignored."""

    @functools.wraps(original)
    def wrong(rho: Any, delta_mu: Any, r: Any) -> Any:
        return original(rho, 0 * delta_mu, r)

    return wrong


def _bound_without_sigma(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of theorem1_bound: R_eps alone, the (1 - sigma) term dropped."""

    @functools.wraps(original)
    def wrong(sigma: Any, r_epsilon: Any) -> Any:
        return original(sigma, r_epsilon) - (1 - sigma)

    return wrong


def _info_nce_pair_without_two(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of info_nce_pair_bound: B / (p_k p_l) in place of B / (2 p_k p_l)."""

    @functools.wraps(original)
    def wrong(budget: Any, p_k: Any, p_l: Any, r: Any) -> Any:
        return original(2 * budget, p_k, p_l, r)

    return wrong


def _cc_pair_without_own(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of cross_correlation_pair_bound: the term sum_m p_m^2 ||mu_m||^4 dropped."""

    @functools.wraps(original)
    def wrong(regulariser: Any, diagonal_sq: Any, own: Any, p_k: Any, p_l: Any) -> Any:
        return original(regulariser, diagonal_sq, 0 * own, p_k, p_l)

    return wrong


PLANTED_06: list[PlantedError] = [
    PlantedError(id="06-rho-r-coef-half", chapter="06_generalization", target="clkit.generalization.rho_max",
                 description="rho_max with R_eps / (2 min p): the coefficient of R_eps halved",
                 make=_rho_r_coefficient_scaled(0.5)),
    PlantedError(id="06-rho-sigma-term-halved", chapter="06_generalization",
                 target="clkit.generalization.rho_max",
                 description="rho_max with (1 - sigma) in place of 2 (1 - sigma): an optimistic condition",
                 make=_rho_sigma_term_halved),
    PlantedError(id="06-threshold-no-sqrt", chapter="06_generalization",
                 target="clkit.generalization.divergence_threshold",
                 description="condition r^2 (1 - rho - Delta/2): the sqrt(2 rho) term dropped",
                 make=_threshold_without_sqrt),
    PlantedError(id="06-threshold-no-deficit", chapter="06_generalization",
                 target="clkit.generalization.divergence_threshold",
                 description="condition without the Delta_mu / 2 term", make=_threshold_without_deficit),
    PlantedError(id="06-bound-no-sigma", chapter="06_generalization",
                 target="clkit.generalization.theorem1_bound",
                 description="Err <= R_eps: the (1 - sigma) term of the bound dropped", make=_bound_without_sigma),
    PlantedError(id="06-bound-3pct-low", chapter="06_generalization",
                 target="clkit.generalization.theorem1_bound",
                 description="bound (1 - sigma) + R_eps 3 % too small", make=scaled(0.97)),
    PlantedError(id="06-infonce-pair-no-two", chapter="06_generalization",
                 target="clkit.generalization.info_nce_pair_bound",
                 description="InfoNCE divergence lemma with B / (p_k p_l): the factor 2 dropped",
                 make=_info_nce_pair_without_two),
    PlantedError(id="06-cc-pair-no-own", chapter="06_generalization",
                 target="clkit.generalization.cross_correlation_pair_bound",
                 description="cross-correlation lemma without the sum_m p_m^2 ||mu_m||^4 term",
                 make=_cc_pair_without_own),
]


PLANTED: list[PlantedError] = [*PLANTED_01, *PLANTED_02, *PLANTED_03, *PLANTED_04, *PLANTED_05, *PLANTED_06]


def by_chapter() -> dict[str, list[PlantedError]]:
    out: dict[str, list[PlantedError]] = {}
    for p in PLANTED:
        out.setdefault(p.chapter, []).append(p)
    return out


def plant(error_id: str) -> PlantedError:
    """Install the planted error ``error_id`` in the running interpreter's clkit (see module docstring)."""
    matches = [p for p in PLANTED if p.id == error_id]
    if len(matches) != 1:
        raise ValueError(f"error_id must name exactly one planted error, got {error_id!r}")
    p = matches[0]
    parts = p.target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    else:
        raise ValueError(f"target {p.target!r} names no importable module")
    for name in parts[cut:-1]:  # a class attribute: "clkit.mixtures.GaussianMixture.sample"
        owner = getattr(owner, name)
    attr = parts[-1]
    original = getattr(owner, attr)
    wrong = p.make(original)
    setattr(owner, attr, wrong)
    for name, mod in list(sys.modules.items()):
        if (name == "clkit" or name.startswith("clkit.")) and mod is not None:
            for key, value in list(vars(mod).items()):
                if value is original:
                    setattr(mod, key, wrong)
    return p
