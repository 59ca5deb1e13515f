r"""Search for finite configurations that break the certificate of Theorem 1's proof (Huang et al. 2023).

The proof of Theorem 1 (:mod:`clkit.generalization`, the book's reconstruction) shows more than the
theorem: under the condition, every *certified* input (in a main part, with spread
:math:`D(x)\le\varepsilon`) is classified correctly. :func:`theorem1_adversarial_search` attacks that
certificate with an evolutionary search over small planar configurations.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._validation import check_nonnegative
from .generalization import (
    SLIDES_RHO_LIMIT,
    _check_int,
    _max_off_diagonal_inner,
    centre_norm_deficit,
    divergence_threshold,
    rho_max,
)

__all__ = ["AdversarialSearch", "ConfigurationEvaluation", "evaluate_adversarial_configurations",
           "theorem1_adversarial_search"]


class AdversarialSearch(NamedTuple):
    """Outcome of :func:`theorem1_adversarial_search` (counts over every configuration evaluated)."""

    r_coefficient: float
    n_evaluated: int
    n_condition: int
    n_violations: int
    n_violations_rho_le_half: int
    max_rho_with_condition: float
    closest_approach: float
    best_score: float
    epsilon_coefficient: float = 2.0
    max_anchor_spread: float = -math.inf  # largest D(a) among the violations
    n_condition_stronger: int = 0  # configurations meeting the book's stronger condition
    n_violations_stronger: int = 0  # ... with a misclassified (0 if the proposition is right)


class ConfigurationEvaluation(NamedTuple):
    """Per-configuration outcome of :func:`evaluate_adversarial_configurations` (tensors of shape ``(n,)``)."""

    condition: torch.Tensor  # bool: the condition of eq. condition holds (margin > 0)
    misclassified_margin: torch.Tensor  # ||f(a) - mu_0||^2 - min_l ||f(a) - mu_l||^2 (> 0: a misclassified)
    rho: torch.Tensor  # rho_max with the coefficients c and e
    condition_margin: torch.Tensor  # threshold of eq. condition minus max_{k != l} mu_k . mu_l
    anchor_spread: torch.Tensor  # D(a)
    stronger: torch.Tensor  # bool: the condition of the book's stronger proposition holds


def _chord(angle: torch.Tensor) -> torch.Tensor:
    return 2 * (angle / 2).sin().abs()


def _adversarial_configurations(params: torch.Tensor, n_classes: int, n_views: int, r_coefficient: float,
                                epsilon_coefficient: float = 2.0
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
    r"""Evaluate the configurations ``params`` (see :func:`theorem1_adversarial_search`).

    Returns ``(condition, misclassified margin of the certified input a, rho, condition margin, D(a),
    stronger)``, ``stronger`` the book's stronger condition: :math:`\rho_\star=\rho_{\max}^{(2)}/2\le\frac12`
    and :math:`\max_{k\ne\ell}\mu_k^\top\mu_\ell<1-\rho_\star-\sqrt{2\rho_\star}` (true :math:`\varepsilon`, no
    :math:`\Delta_\mu`).
    Each parameter is a row of the transpose of ``params`` (the reductions run over rows).
    """
    k = n_classes
    cols = params.T.contiguous()  # (dim, n)
    alpha, beta, gamma = cols[0:3].softmax(dim=0)  # masses of the inputs of class 0
    weights = cols[3:3 + k].softmax(dim=0)  # (K, n): p_0 .. p_{K-1}
    theta_b, theta_c, theta_c2 = cols[3 + k], cols[4 + k], cols[5 + k]
    phi = cols[6 + k:5 + 2 * k]  # (K-1, n) angles of the other classes
    psi = cols[5 + 2 * k:4 + 3 * k]  # (K-1, n) their spreads
    # the anchor a: f(a) = e_0 (its view at angle 0), a fraction lam of its views at theta_a,
    # so D(a) = chord(theta_a); it is certified: eps is drawn in [D(a), 2]
    theta_a, lam = cols[5 + 3 * k], cols[6 + 3 * k].sigmoid()
    d_a = _chord(theta_a)
    epsilon = d_a + (2 - d_a) * cols[4 + 3 * k].sigmoid()
    shared, moved = beta / n_views, beta * (n_views - 1) / n_views  # views of b at theta_a and theta_b
    # mu_0 = alpha ((1-lam) e_0 + lam u(theta_a)) + beta/M u(theta_a) + beta (M-1)/M u(theta_b)
    #        + gamma/2 (u(theta_c) + u(theta_c2))
    mu0_x = alpha * (1 - lam) + (alpha * lam + shared) * theta_a.cos() + moved * theta_b.cos() \
        + (gamma / 2) * (theta_c.cos() + theta_c2.cos())
    mu0_y = (alpha * lam + shared) * theta_a.sin() + moved * theta_b.sin() \
        + (gamma / 2) * (theta_c.sin() + theta_c2.sin())
    other_x = ((phi.cos() + (phi + psi).cos()) / 2).T  # (n, K-1)
    other_y = ((phi.sin() + (phi + psi).sin()) / 2).T
    centres = torch.stack([torch.cat([mu0_x[:, None], other_x], dim=1),
                           torch.cat([mu0_y[:, None], other_y], dim=1)], dim=-1)  # (n, K, 2)
    d_b, d_c, d_other = _chord(theta_b - theta_a), _chord(theta_c - theta_c2), _chord(psi)
    r_eps = weights[0] * (beta * (d_b > epsilon) + gamma * (d_c > epsilon)) \
        + (weights[1:] * (d_other > epsilon)).sum(dim=0)
    sigma = alpha + beta  # the other classes are their own main parts (sigma_l = 1)
    # epsilon_coefficient 2 is eq. rho: sigma * 2 eps / r
    rho = rho_max(sigma, r_eps.clamp(0, 1), weights.min(dim=0).values, 1.0, epsilon * epsilon_coefficient / 2,
                  r_coefficient=r_coefficient)
    threshold = divergence_threshold(rho, centre_norm_deficit(centres, 1.0), 1.0)
    margin = threshold - _max_off_diagonal_inner(centres)
    # input a (in the main part, f(a) = e_0, D(a) <= eps): misclassified when
    # some other centre is at least as close as mu_0
    dist_0 = (1 - mu0_x).pow(2) + mu0_y.pow(2)
    dist_other = (1 - other_x).pow(2) + other_y.pow(2)
    misclassified = dist_0 - dist_other.min(dim=1).values
    rho_star = rho_max(sigma, r_eps.clamp(0, 1), weights.min(dim=0).values, 1.0, epsilon, r_coefficient=2) / 2
    stronger = (divergence_threshold(rho_star, 0.0, 1.0) > _max_off_diagonal_inner(centres)) \
        & (rho_star <= SLIDES_RHO_LIMIT)
    return margin > 0, misclassified, rho, margin, d_a, stronger


def evaluate_adversarial_configurations(params: torch.Tensor, *, n_classes: int, n_views: int,
                                        r_coefficient: float = 1.0, epsilon_coefficient: float = 2.0
                                        ) -> ConfigurationEvaluation:
    r"""Evaluate explicit configurations of :func:`theorem1_adversarial_search`, exactly.

    Row ``i`` of ``params`` (shape ``(n, 7 + 3K)``, ``K = n_classes``) is one configuration in the
    search's parametrisation: log-masses of the inputs a, b, c of class 0 (softmax); log class weights
    (softmax); the angles :math:`\theta_b, \theta_c, \theta_{c'}`; the angles :math:`\phi_\ell` and
    spreads :math:`\psi_\ell` of the other classes; the logit of :math:`\varepsilon` in
    :math:`[D(a), 2]`; :math:`\theta_a`; the logit of the fraction :math:`\lambda` of a's views at
    :math:`\theta_a`. :math:`\rho_{\max}` is eq. (rho) with :math:`c` in front of
    :math:`R_\varepsilon/\min_\ell p_\ell` and :math:`e\,\sigma\varepsilon/r` for
    :math:`2\sigma\varepsilon/r` (``r = 1``).

    Returns:
        A :class:`ConfigurationEvaluation`; a row with ``condition`` true and ``misclassified_margin > 0``
        violates the certificate with these coefficients.

    Raises:
        ValueError: if ``params`` is not a floating ``(n, 7 + 3K)`` tensor, or a count or coefficient is
            invalid.
    """
    n_classes = _check_int("n_classes", n_classes, 2)
    n_views = _check_int("n_views", n_views, 2)
    r_coefficient = check_nonnegative("r_coefficient", r_coefficient)
    epsilon_coefficient = check_nonnegative("epsilon_coefficient", epsilon_coefficient)
    if params.ndim != 2 or params.shape[1] != 7 + 3 * n_classes or not params.is_floating_point():
        raise ValueError(f"params must be a floating (n, {7 + 3 * n_classes}) tensor, "
                         f"got {tuple(params.shape)} {params.dtype}")
    return ConfigurationEvaluation(*_adversarial_configurations(
        params, n_classes, n_views, r_coefficient, epsilon_coefficient))


def theorem1_adversarial_search(n_configurations: int, generator: torch.Generator, *, r_coefficient: float,
                                n_classes: int = 2, n_rounds: int = 12, n_restarts: int = 16,
                                n_views: int = 8, epsilon_coefficient: float = 2.0,
                                dtype: torch.dtype = torch.float64) -> AdversarialSearch:
    r"""Search for configurations that break Theorem 1's certificate with coefficient :math:`c`.

    A configuration (``r = 1``, :math:`d = 2`) is a finite instance built to give an adversary the
    freedom the proof allows. Class 0 has three inputs: *a* (mass :math:`\alpha`, embedded at angle 0,
    a fraction :math:`1-\lambda` of its views at angle 0 and :math:`\lambda` at :math:`\theta_a`, so
    :math:`D(a) = 2|\sin(\theta_a/2)|`, and certified: :math:`\varepsilon` is drawn in
    :math:`[D(a), 2]`), *b* (mass :math:`\beta`, one view shared with *a* at :math:`\theta_a`, so
    :math:`d_A(a, b) = 0`, and :math:`M-1` views at angle :math:`\theta_b`) and *c* (mass
    :math:`\gamma`, outside the main part :math:`\{a, b\}`, views at two free angles). Every other
    class :math:`\ell` is one input with views at two free angles. Class weights, masses,
    angles and :math:`\varepsilon` are free; :math:`\sigma = \alpha+\beta`, :math:`R_\varepsilon`,
    :math:`\mu_k`, :math:`\Delta_\mu` and the condition (:func:`rho_max` with ``r_coefficient``,
    :func:`divergence_threshold`) are computed exactly; ``epsilon_coefficient`` replaces the 2 of
    :math:`2\sigma\varepsilon/r` in :math:`\rho_{\max}` (2 is the slides'). A *violation* is a configuration where the
    condition holds and the certified input *a* is misclassified by the nearest-centre rule.

    The search splits ``n_configurations`` into ``n_restarts`` independent populations, draws them
    at random, then for ``n_rounds`` replaces each population by perturbations (shrinking noise) of
    its best 5 %. Even populations rank by ``min(condition margin, misclassification margin)``
    (they approach a violation from both sides), odd ones by the misclassification margin among
    configurations that meet the condition (they explore the region the theorem covers). Restarts
    matter: a single population either finds the basin of violations or settles elsewhere.

    Returns:
        Counts over all evaluated configurations: where the condition holds, violations, violations
        with :math:`\rho_{\max}\le 1/2`; the largest :math:`\rho_{\max}` with the condition; the
        *closest approach*, the largest :math:`\|f(a)-\mu_0\|^2-\min_{\ell}\|f(a)-\mu_\ell\|^2`
        where the condition holds (positive: a violation); the best score; the largest :math:`D(a)`
        among the violations; how many configurations meet the book's stronger condition
        (:math:`\rho_\star=\rho_{\max}^{(2)}/2\le\frac12`, no :math:`\Delta_\mu`, the slides' coefficient of
        :math:`\varepsilon`) and how many of those have *a* misclassified (0 if that proposition holds).

    Raises:
        ValueError: for invalid sizes or a negative coefficient.
    """
    _check_int("n_configurations", n_configurations, 20)
    _check_int("n_classes", n_classes, 2)
    _check_int("n_rounds", n_rounds, 0)
    _check_int("n_views", n_views, 2)
    r_coefficient = check_nonnegative("r_coefficient", r_coefficient)
    _check_int("n_restarts", n_restarts, 1)
    epsilon_coefficient = check_nonnegative("epsilon_coefficient", epsilon_coefficient)
    dim = 7 + 3 * n_classes
    device = generator.device
    size = max(20, n_configurations // n_restarts)
    keep = max(1, size // 20)
    totals = [0, 0, 0, 0, 0, 0]
    max_rho, best, closest, max_spread = -math.inf, -math.inf, -math.inf, -math.inf
    # independent populations, evolved side by side: (restarts, size, dim)
    # random draws in float32, evaluated in ``dtype``
    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    params = noise(n_restarts, size, dim) * 2
    odd = (torch.arange(n_restarts, device=device) % 2 == 1)[:, None]
    for round_ in range(n_rounds + 1):
        condition, misclassified, rho, margin, d_a, stronger = _adversarial_configurations(
            params.reshape(-1, dim), n_classes, n_views, r_coefficient, epsilon_coefficient)
        violation = condition & (misclassified > 0)
        totals[0] += condition.numel()
        totals[1] += int(condition.sum())
        totals[2] += int(violation.sum())
        totals[3] += int((violation & (rho <= SLIDES_RHO_LIMIT)).sum())
        totals[4] += int(stronger.sum())
        totals[5] += int((stronger & (misclassified > 0)).sum())
        if bool(violation.any()):
            max_spread = max(max_spread, float(d_a[violation].max()))
        if bool(condition.any()):
            max_rho = max(max_rho, float(rho[condition].max()))
            closest = max(closest, float(misclassified[condition].max()))
        # even populations approach a violation from both sides (min of the two margins); odd ones
        # stay inside the condition and get as close to a misclassification as they can
        both = torch.minimum(margin, misclassified).reshape(n_restarts, size)
        inside = torch.where(margin > 0, misclassified, margin - 4).reshape(n_restarts, size)
        score = torch.where(odd, inside, both)
        best = max(best, float(score.max()))
        if round_ == n_rounds:
            break
        elite = params.gather(1, score.topk(keep, dim=1).indices[..., None].expand(-1, -1, dim))
        pick = torch.randint(0, keep, (n_restarts, size), generator=generator, device=device)
        parents = elite.gather(1, pick[..., None].expand(-1, -1, dim))
        scale = 0.5 * 0.7**round_
        params = parents + scale * noise(*parents.shape)
    return AdversarialSearch(r_coefficient=r_coefficient, n_evaluated=totals[0], n_condition=totals[1],
                             n_violations=totals[2], n_violations_rho_le_half=totals[3],
                             max_rho_with_condition=max_rho, closest_approach=closest, best_score=best,
                             epsilon_coefficient=epsilon_coefficient, max_anchor_spread=max_spread,
                             n_condition_stronger=totals[4], n_violations_stronger=totals[5])

