"""Planted errors of chapter 04_alpha_cl (alpha-CL): kept by that chapter's author."""

from __future__ import annotations

from typing import Any, Callable

from planted_errors import PlantedError, scaled

def _uniform_mean_half_variance(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(v_conditional_mean: Any, v_total: Any, n: Any) -> Any:
        return v_conditional_mean - v_total / (2 * n)  # coefficient 1/(2N) instead of 1/N

    return wrong


def _flow_matrix_without_b(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(a: Any, b: Any, w: Any) -> Any:
        return original(a, 0 * b, w)  # drops E^T B_E, the roughness term of J

    return wrong


def _bound_without_tau_term(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu", tau: Any = None) -> Any:
        return self.roughness_bound_terms(w, activation, tau)[..., 0]  # gate term only

    return wrong


def _gated_mean_3pct(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu") -> Any:
        return 1.03 * original(self, w, activation)

    return wrong


def _eigengap_smallest_other(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(a: Any, w: Any) -> tuple[float, float]:
        import torch

        w_hat = w / w.norm()
        lam = float(w_hat @ a @ w_hat)
        basis = torch.linalg.qr(torch.cat([w_hat[:, None], torch.eye(len(w), dtype=a.dtype)], 1))[0][:, 1:len(w)]
        return lam, lam - float(torch.linalg.eigvalsh(basis.T @ a @ basis).min())  # smallest, not largest

    return wrong


def _uniform_b_without_mean(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu") -> Any:
        import torch

        w_hat = w / w.norm(dim=-1, keepdim=True)
        g = (self.gated_means(w, activation) * w_hat[..., None, :]).sum(-1)
        weights = self.probs * g  # p_k g_k: the mean g-bar dropped
        return torch.einsum("...k,...kij->...ij", weights, self.gate_jacobians(w, activation))

    return wrong


def _kernel_tau_doubled(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu", tau: Any = None) -> Any:
        return original(self, w, activation, None if tau is None else 2 * tau)  # exp(-D^2/4tau)

    return wrong


def _kernel_tau_90pct(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(self: Any, w: Any, activation: str = "relu", tau: Any = None) -> Any:
        return original(self, w, activation, None if tau is None else 0.9 * tau)  # 0.9 tau

    return wrong


PLANTED: list[PlantedError] = [
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
                 target="clkit.alpha_cl.LatentPatternModel.roughness_bound",
                 description="roughness bound R without its tau (kernel) term",
                 make=_bound_without_tau_term),
    PlantedError(id="04-bound-factor-2", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.roughness_bound",
                 description="roughness bound R twice too large (a valid but loose bound)",
                 make=scaled(2.0)),
    PlantedError(id="04-gated-mean-3pct", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.gated_means",
                 description="conditional mean m_k of the gated data 3 % too large",
                 make=_gated_mean_3pct),
    PlantedError(id="04-eigengap-smallest-other", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.eigengap",
                 description="eigengap against the smallest other eigenvalue (an optimistic condition)",
                 make=_eigengap_smallest_other),
    PlantedError(id="04-uniform-b-drops-mean", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.uniform_roughness_matrix",
                 description="B = sum_k p_k g_k J_k for uniform alpha: the mean g-bar dropped",
                 make=_uniform_b_without_mean),
    PlantedError(id="04-kernel-tau-doubled", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.kernel",
                 description="Gaussian pattern kernel exp(-D^2/(4 tau)): shifts the bifurcation in tau",
                 make=_kernel_tau_doubled),
    PlantedError(id="04-kernel-tau-90pct", chapter="04_alpha_cl",
                 target="clkit.alpha_cl.LatentPatternModel.kernel",
                 description="Gaussian pattern kernel at 0.9 tau: moves the transition in tau by 10 %",
                 make=_kernel_tau_90pct),
]
