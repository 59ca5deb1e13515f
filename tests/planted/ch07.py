"""Planted errors of chapter 07_real_data (the theorems on handwritten digits)."""

from __future__ import annotations

import functools
from typing import Any, Callable

from planted_errors import PlantedError, scaled, shifted  # noqa: F401


def _pooled_covariance_10pct(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(x: Any, labels: Any) -> Any:
        import clkit

        fit = original(x, labels)  # the mistake: pooled covariance 10 % too large
        cov = fit.covariances if fit.covariances.ndim == 2 else fit.covariances[0]
        return clkit.GaussianMixture(fit.weights, fit.means, 1.1 * cov)

    return wrong


def _class_means_5pct(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(x: Any, labels: Any) -> Any:
        import clkit

        fit = original(x, labels)  # the mistake: class means 5 % too long
        cov = fit.covariances if fit.covariances.ndim == 2 else fit.covariances[0]
        return clkit.GaussianMixture(fit.weights, 1.05 * fit.means, cov)

    return wrong


def _noise_std_5pct(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(images: Any, generator: Any, **kwargs: Any) -> Any:
        kwargs["noise_std"] = 1.05 * kwargs.get("noise_std", 0.0)  # noise 5 % too strong
        return original(images, generator, **kwargs)

    return wrong


def _partner_delta_90pct(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(labels: Any, delta: float, generator: Any) -> Any:
        return original(labels, 0.9 * delta, generator)  # same-class partners too rare

    return wrong


def _augmentation_variance_half(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(view1: Any, view2: Any) -> Any:
        # the mistake: the difference of two views has variance 2 sigma^2, the 2 forgotten
        return original(view1, view2) / 2

    return wrong


def _relu_mean_no_noise_term(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(mean: Any, std: Any) -> Any:
        import torch

        first, second = original(mean, std)
        # the mistake: E relu(u) = a Phi(a/s), the s phi(a/s) term of the noise dropped
        s = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
        pdf = torch.exp(-0.5 * (mean / s) ** 2) / (2 * torch.pi) ** 0.5
        return first - s * pdf, second

    return wrong


def _relu_second_moment_without(term: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def plant(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(mean: Any, std: Any) -> Any:
            import torch

            first, second = original(mean, std)
            s = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
            z = mean / s
            if term == "s2Phi":  # the mistake: E relu(u)^2 = a^2 Phi + a s phi
                return first, second - s * s * torch.special.ndtr(z)
            # the mistake: E relu(u)^2 = (a^2 + s^2) Phi, the a s phi term dropped
            return first, second - mean * s * torch.exp(-0.5 * z * z) / (2 * torch.pi) ** 0.5

        return wrong

    return plant


def _uniform_mean_no_finite_n(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(v_conditional_mean: Any, v_total: Any, n: Any) -> Any:
        original(v_conditional_mean, v_total, n)  # same argument checks
        return v_conditional_mean  # the mistake: E C_N = V[E[x|x0]], the -V[x]/N dropped

    return wrong


def _population_uncentred(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(means: Any, probs: Any, kernel: Any = None) -> Any:
        if kernel is not None:
            return original(means, probs, kernel)
        # the mistake: uniform alpha's A(w) as the uncentred second moment sum_k p_k m_k m_k^T
        weighted = means * probs.to(means.dtype)[:, None]
        return weighted.transpose(-1, -2) @ means

    return wrong


PLANTED: list[PlantedError] = [
    PlantedError("07-pooled-covariance-10pct", "07_real_data",
                 "clkit.digits.fit_shared_covariance_mixture",
                 "fitted mixture's pooled covariance 10 % too large", _pooled_covariance_10pct),
    PlantedError("07-class-means-5pct", "07_real_data",
                 "clkit.digits.fit_shared_covariance_mixture",
                 "fitted mixture's class means 5 % too long", _class_means_5pct),
    PlantedError("07-noise-std-5pct", "07_real_data", "clkit.digits.augment_digits",
                 "augmentation noise standard deviation 5 % too large", _noise_std_5pct),
    PlantedError("07-partner-delta-90pct", "07_real_data",
                 "clkit.digits.sample_class_partners",
                 "pairs built with bias 0.9 delta instead of delta", _partner_delta_90pct),
    PlantedError("07-augmentation-variance-half", "07_real_data",
                 "clkit.digits.augmentation_variance",
                 "sigma^2 from view pairs without the factor 2 (half the noise in tau*, tau_e)",
                 _augmentation_variance_half),
    PlantedError("07-exact-threshold-130pct", "07_real_data",
                 "clkit.projection.exact_threshold",
                 "tau_e 30 % too large (the bracket claims of the projection heads must fail)",
                 scaled(1.3)),
    PlantedError("07-relu-mean-no-noise-term", "07_real_data",
                 "clkit.alpha_cl.relu_gaussian_moments",
                 "rectified-Gaussian mean without its s phi(a/s) term (alpha-CL check of "
                 "E C_N on digits)", _relu_mean_no_noise_term),
    PlantedError("07-population-uncentred", "07_real_data",
                 "clkit.alpha_cl.pattern_population_matrix",
                 "uniform-alpha A(w) without centring the gated means (alpha-CL roughness)",
                 _population_uncentred),
    PlantedError("07-relu-m2-no-s2Phi", "07_real_data",
                 "clkit.alpha_cl.relu_gaussian_moments",
                 "rectified-Gaussian second moment without its s^2 Phi(a/s) term (alpha-CL "
                 "check of E C_N on digits)", _relu_second_moment_without("s2Phi")),
    PlantedError("07-relu-m2-no-asphi", "07_real_data",
                 "clkit.alpha_cl.relu_gaussian_moments",
                 "rectified-Gaussian second moment without its a s phi(a/s) term (alpha-CL "
                 "check of E C_N at N = 1)", _relu_second_moment_without("asphi")),
    PlantedError("07-uniform-mean-no-V-over-N", "07_real_data",
                 "clkit.alpha_cl.uniform_alpha_expected_covariance",
                 "E C_N for uniform alpha without its -V[x]/N term (alpha-CL check of E C_N "
                 "on digits)", _uniform_mean_no_finite_n),
]
