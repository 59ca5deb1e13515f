"""Planted errors of chapter 03_fisher_subspace (Fisher subspace): kept by that chapter's author."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from planted_errors import PlantedError, scaled

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


def _lyapunov_without_mean(original: Callable[..., Any]) -> Callable[..., Any]:
    """The Lyapunov root with X = I instead of I + c c^T (the mean's term of S_2 dropped):
    right for centred means only."""

    @functools.wraps(original)
    def wrong(mixture: Any) -> Any:
        import torch

        from clkit.fisher import _sym_sqrt_inverse, mixture_moments

        mom = mixture_moments(mixture)
        t_inv_half = _sym_sqrt_inverse(mom["sigma_tot"])
        n = t_inv_half @ mom["b_c"] @ t_inv_half  # X N + N X = 2 R with X = I
        m1 = t_inv_half @ n @ t_inv_half
        return 0.5 * (m1 + m1.T)

    return wrong


def _slack_without_mean_term(original: Callable[..., Any]) -> Callable[..., Any]:
    """The slack identity without the -(1 - delta)(w^T a)^2 term."""

    @functools.wraps(original)
    def wrong(m: Any, mixture: Any, delta: float, e: Any, n_quadrature: int = 40) -> Any:
        a = mixture.means @ e
        return original(m, mixture, delta, e, n_quadrature) + (1 - delta) * (mixture.weights @ a) ** 2

    return wrong


def _exceptional_in_euclidean_metric(original: Callable[..., Any]) -> Callable[..., Any]:
    """The exceptional set tested with mu_bar^T (mu_k - mu_bar) = 0 (Sigma^-1 dropped)."""

    @functools.wraps(original)
    def wrong(weights: Any, means: Any, cov: Any, **kwargs: Any) -> Any:
        import torch

        eye = torch.eye(means.shape[1], dtype=means.dtype, device=means.device)
        return original(weights, means, eye, **kwargs)

    return wrong


def _slack_on_whole_complement(original: Callable[..., Any]) -> Callable[..., Any]:
    """psd_kkt_certificate ignores ``subspace``: the slack on all of Col(M)^perp, which is 0 when
    d > dim S_F (Z vanishes on {e: mu_k^T e = 0})."""

    @functools.wraps(original)
    def wrong(gradient: Any, a: Any, subspace: Any = None) -> Any:
        return original(gradient, a)

    return wrong


PLANTED: list[PlantedError] = [
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
                 target="clkit.population_solvers._clip_derivatives",
                 description="CLIP Newton's gradient and Hessian with the quadratic term 3 % too large "
                             "(consistent, so only the independent autograd gradient can see it)",
                 make=_clip_quadratic_term_3pct),
    PlantedError(id="03-minibatch-gradient-partner-term-dropped", chapter="03_fisher_subspace",
                 target="clkit.infonce_training._batched_pair_info_nce_gradient",
                 description="minibatch InfoNCE gradient by hand without the partner term X_hat^T dL/dZ_hat",
                 make=_minibatch_gradient_without_partner_term),
    PlantedError(id="03-lyapunov-root-without-mean", chapter="03_fisher_subspace",
                 target="clkit.fisher.small_delta_lyapunov_term",
                 description="Lyapunov root of eq-fisher-m1 with X = I (S_2 replaced by Sigma_tot)",
                 make=_lyapunov_without_mean),
    PlantedError(id="03-slack-identity-mean-term-dropped", chapter="03_fisher_subspace",
                 target="clkit.fisher.kkt_slack_identity",
                 description="KKT slack identity without -(1 - delta)(w^T a)^2",
                 make=_slack_without_mean_term),
    PlantedError(id="03-exceptional-set-euclidean", chapter="03_fisher_subspace",
                 target="clkit.fisher.small_delta_exceptional",
                 description="exceptional set mu_bar^T (mu_k - mu_bar) = 0 without Sigma^-1",
                 make=_exceptional_in_euclidean_metric),
    PlantedError(id="03-kkt-slack-subspace-ignored", chapter="03_fisher_subspace",
                 target="clkit.population_solvers.psd_kkt_certificate",
                 description="KKT slack on all of Col(M*)^perp instead of S_F minus Col(M*)",
                 make=_slack_on_whole_complement),
]
