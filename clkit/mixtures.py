"""Gaussian-mixture data models.

A :class:`GaussianMixture` is a frozen description of

.. math:: F = \\sum_{k=1}^K w_k\\,\\mathcal N(\\mu_k, \\Sigma_k),

validated at construction (weights on the simplex, positive-definite covariances) and sampled
through an explicit ``torch.Generator``, in the spirit of ``torch.distributions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._validation import check_positive, check_positive_definite, check_probability_vector, check_shape, check_finite
from .device import as_tensor

__all__ = ["GaussianMixture"]


@dataclass(frozen=True)
class GaussianMixture:
    r"""A K-component Gaussian mixture in :math:`\mathbb R^d`.

    Args:
        weights: ``(K,)`` mixing weights :math:`w_k \ge 0`, :math:`\sum_k w_k = 1`.
        means: ``(K, d)`` component means :math:`\mu_k`.
        covariances: ``(K, d, d)`` covariances :math:`\Sigma_k`, or one ``(d, d)`` matrix shared by
            all components (the shared-covariance model of Bansal et al.).

    All three are moved to the dtype and device of ``means`` (float64 for non-tensor input).

    Raises:
        ValueError: naming the argument, for wrong shapes, weights off the simplex, or a covariance
            that is not symmetric positive definite.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    _chol: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        means = as_tensor(self.means)
        weights = as_tensor(self.weights, dtype=means.dtype, device=means.device)
        covs = as_tensor(self.covariances, dtype=means.dtype, device=means.device)
        check_shape("means", means, (None, None))
        check_finite("means", means)
        k, d = means.shape
        check_shape("weights", weights, (k,))
        check_probability_vector("weights", weights)
        if covs.dim() == 2:
            check_shape("covariances", covs, (d, d))
            covs = covs.expand(k, d, d).clone()
        check_shape("covariances", covs, (k, d, d))
        check_positive_definite("covariances", covs)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "covariances", covs)
        object.__setattr__(self, "_chol", torch.linalg.cholesky(covs))

    @classmethod
    def symmetric_two_component(cls, mu: torch.Tensor, variance: float = 1.0) -> "GaussianMixture":
        r""":math:`\tfrac12\mathcal N(-\mu, v I_p) + \tfrac12\mathcal N(\mu, v I_p)` (Gui et al. 2023, feature model)."""
        mu = as_tensor(mu)
        check_shape("mu", mu, (None,))
        variance = check_positive("variance", variance)
        eye = torch.eye(mu.numel(), dtype=mu.dtype, device=mu.device)
        half = torch.full((2,), 0.5, dtype=mu.dtype, device=mu.device)
        return cls(half, torch.stack([-mu, mu]), variance * eye)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def shared_covariance(self) -> bool:
        return bool(torch.equal(self.covariances, self.covariances[:1].expand_as(self.covariances)))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianMixture":
        """The same mixture on another device and/or dtype."""
        kw = {"device": device, "dtype": dtype}
        return GaussianMixture(self.weights.to(**kw), self.means.to(**kw), self.covariances.to(**kw))

    def mean(self) -> torch.Tensor:
        r"""Mixture mean :math:`\sum_k w_k\mu_k`, shape ``(d,)``."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        r"""Total covariance :math:`\sum_k w_k(\Sigma_k + \mu_k\mu_k^\top) - \bar\mu\bar\mu^\top`, shape ``(d, d)``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covariances)
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def sample_components(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` i.i.d. component labels in ``{0, …, K-1}`` drawn with probabilities ``weights``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def sample_given(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw from component ``labels[i]`` for each ``i``, shape ``(n, d)``."""
        check_shape("labels", labels, (None,))
        z = torch.randn(labels.numel(), self.dim, dtype=self.dtype, device=self.device, generator=generator)
        # x_i = mu_{k_i} + L_{k_i} z_i, one matrix product per component (K is small) rather than
        # gathering an (n, d, d) stack of Cholesky factors
        x = self.means[labels]
        if self.n_components == 1 or bool((self._chol == self._chol[:1]).all()):
            return x.addmm_(z, self._chol[0].T)
        for k in range(self.n_components):
            rows = (labels == k).nonzero().squeeze(-1)
            if rows.numel():
                x.index_add_(0, rows, z.index_select(0, rows) @ self._chol[k].T)
        return x

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` i.i.d. draws: ``(x, labels)`` with ``x`` of shape ``(n, d)`` and ``labels`` of shape ``(n,)``.

        ``generator`` must live on the mixture's device (see :func:`clkit.make_generator`).
        """
        labels = self.sample_components(n, generator)
        return self.sample_given(labels, generator), labels

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log density :math:`\log\sum_k w_k\,\varphi(x;\mu_k,\Sigma_k)` of each row of ``x`` (``(n, d)``)."""
        check_shape("x", x, (None, self.dim))
        diff = x.unsqueeze(1) - self.means  # (n, K, d)
        sol = torch.linalg.solve_triangular(self._chol, diff.transpose(0, 1).transpose(1, 2), upper=False)
        maha = sol.pow(2).sum(dim=1).transpose(0, 1)  # (n, K)
        logdet = 2 * torch.log(torch.diagonal(self._chol, dim1=-2, dim2=-1)).sum(-1)
        comp = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(comp + torch.log(self.weights), dim=1)
