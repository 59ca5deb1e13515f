r"""Training encoders on the bridged lattice of :mod:`clkit.generalization`, with exact diagnostics.

:class:`LatticeEncoders` holds ``B`` independent MLPs as one batched model;
:func:`train_lattice_encoders` trains them with Huang et al.'s two losses (torch.optim's Adam with
cosine decay of the learning rate); :func:`lattice_diagnostics` computes every population quantity
of Theorem 1 and of the two decomposition lemmas for each member, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ._validation import check_finite, check_nonnegative, check_positive
from .device import make_generator
from .generalization import (
    InfoNCEDecomposition,
    RotationAugmentation,
    _check_int,
    _max_off_diagonal_inner,
    augmentation_spread,
    class_centres,
    nearest_centre_error,
    nearest_centre_predict,
    one_negative_info_nce,
    population_cross_correlation,
    population_info_nce,
    second_moment_normalize,
)
from .progress_bars import progress as progress_bar

__all__ = ["LatticeEncoders", "LatticeDiagnostics", "lattice_diagnostics", "train_lattice_encoders"]


class LatticeEncoders(torch.nn.Module):
    r"""``B`` independent two-hidden-layer MLPs on the circle, normalised to radius :math:`r`, as one batched model.

    Member :math:`b` computes :math:`f_b(x) = r\,h_b(x)/\|h_b(x)\|` with
    :math:`h_b = W_3^{(b)}\,\mathrm{SiLU}(W_2^{(b)}\,\mathrm{SiLU}(W_1^{(b)}\phi(x) + c_1^{(b)}) + c_2^{(b)}) + c_3^{(b)}`,
    where :math:`\phi(x_j) = (\cos 2\pi hj/N, \sin 2\pi hj/N)_{h=1..F}` are the first ``frequencies``
    harmonics of the lattice point's angle (``F = 1``: its coordinates).
    The weights of member :math:`b` are drawn with its own generator ``make_generator(seeds[b])``
    (uniform :math:`\pm 1/\sqrt{\text{fan-in}}`, as PyTorch's default), so a member does not
    depend on the others; all members train in the same batched matrix products. ``radius`` may be
    changed during training (a schedule of the inverse temperature).

    Raises:
        ValueError: for non-positive sizes or radius, or an empty ``seeds``.
    """

    def __init__(self, seeds: list[int], n_points: int, hidden: int, out_dim: int, radius: float,
                 frequencies: int = 1, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not seeds:
            raise ValueError("seeds must name at least one encoder")
        _check_int("n_points", n_points, 2)
        _check_int("hidden", hidden, 0)
        _check_int("out_dim", out_dim, 1)
        _check_int("frequencies", frequencies, 1)
        self.radius = check_positive("radius", radius)
        angle = 2 * math.pi * torch.arange(n_points, dtype=dtype, device=device) / n_points
        harmonics = torch.arange(1, frequencies + 1, dtype=dtype, device=device)
        self.register_buffer("features", torch.cat([torch.cos(angle[:, None] * harmonics),
                                                    torch.sin(angle[:, None] * harmonics)], dim=1))
        sizes = [(2 * frequencies, hidden), (hidden, hidden), (hidden, out_dim)]
        weights: list[list[torch.Tensor]] = [[], [], []]
        biases: list[list[torch.Tensor]] = [[], [], []]
        for seed in seeds if hidden else []:
            generator = make_generator(seed, device if device is not None else "cpu")
            for i, (fan_in, fan_out) in enumerate(sizes):
                bound = 1 / math.sqrt(fan_in)
                w = torch.empty(fan_in, fan_out, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
                c = torch.empty(1, fan_out, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
                weights[i].append(w)
                biases[i].append(c)
        if hidden == 0:  # a free embedding of every lattice point
            tables = [torch.randn(n_points, out_dim, dtype=dtype, device=device,
                                  generator=make_generator(seed, device if device is not None else "cpu"))
                      for seed in seeds]
            self.table = torch.nn.Parameter(torch.stack(tables))
            self.weights, self.biases = torch.nn.ParameterList(), torch.nn.ParameterList()
            return
        self.table = None
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.stack(w)) for w in weights])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.stack(c)) for c in biases])

    @property
    def n_models(self) -> int:
        return int((self.table if self.table is not None else self.weights[0]).shape[0])

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """``(n,)`` (shared) or ``(B, n)`` lattice indices to ``(B, n, out_dim)`` embeddings of norm ``radius``."""
        if self.table is not None:
            rows = torch.arange(self.n_models, device=indices.device).reshape(-1, *([1] * max(indices.dim(), 1)))
            out = self.table[rows, indices] if indices.dim() > 1 else self.table[:, indices]
            return self.radius * F.normalize(out, dim=-1)
        h = F.silu(self.features[indices] @ self.weights[0] + self.biases[0])
        h = F.silu(h @ self.weights[1] + self.biases[1])
        return self.radius * F.normalize(h @ self.weights[2] + self.biases[2], dim=-1)


@dataclass(frozen=True)
class LatticeDiagnostics:
    """Exact population quantities of ``B`` encoders on the lattice (see :func:`lattice_diagnostics`).

    Tensor fields have a leading dimension ``B``: embeddings ``(B, N, d)``, centres and normalised
    centres ``(B, K, d)``, spread and predictions ``(B, N)``, error ``(B,)``, correlation ``(B, d, d)``;
    ``info_nce`` holds ``(B,)`` tensors.
    """

    step: int
    radius: float
    embeddings: torch.Tensor
    centres: torch.Tensor
    normalized_centres: torch.Tensor
    spread: torch.Tensor
    predictions: torch.Tensor
    error: torch.Tensor
    info_nce: InfoNCEDecomposition
    correlation: torch.Tensor

    @property
    def max_inner_product(self) -> torch.Tensor:
        """``(B,)`` :math:`\\max_{k\\ne\\ell}\\mu_k^\\top\\mu_\\ell`, the divergence of the class centres."""
        return _max_off_diagonal_inner(self.centres)


def lattice_diagnostics(encoders: LatticeEncoders, augmentation: RotationAugmentation, step: int = 0
                        ) -> LatticeDiagnostics:
    r"""Embed every lattice point by every encoder and compute, exactly: :math:`\mu_k`, :math:`\tilde\mu_k`,
    :math:`D(x)`, :math:`G_f`, :math:`\mathrm{Err}(G_f)`, the InfoNCE split and the cross-correlation
    matrix :math:`C`, each with a leading dimension ``B``."""
    data = augmentation.data
    with torch.no_grad():
        f = encoders(torch.arange(data.n_points, device=data.weights.device)).to(data.weights.dtype)
        f = encoders.radius * F.normalize(f, dim=-1)  # exactly on the sphere in the data's precision
    centres = class_centres(f, augmentation.class_view_distributions)
    normalized = class_centres(second_moment_normalize(f, augmentation.view_marginal),
                               augmentation.class_view_distributions)
    spread = augmentation_spread(f[:, augmentation.view_indices])
    predictions = nearest_centre_predict(f, centres)
    return LatticeDiagnostics(step=step, radius=encoders.radius, embeddings=f, centres=centres,
                              normalized_centres=normalized, spread=spread, predictions=predictions,
                              error=nearest_centre_error(predictions, data.joint()),
                              info_nce=population_info_nce(f, augmentation),
                              correlation=population_cross_correlation(f, augmentation))


def _training_loss(encoders: LatticeEncoders, views: torch.Tensor, loss: str, lam: float) -> torch.Tensor:
    r"""Summed mini-batch loss of the members on the views ``(B, 2n)`` (first view of each input, then
    the second): :func:`one_negative_info_nce`, or the cross-correlation loss
    :math:`\sum_i(1-C_{ii})^2 + \lambda\sum_{i\ne j}C_{ij}^2`, :math:`C = \tilde z_1^\top\tilde z_2/n`,
    with :func:`second_moment_normalize` over both views of each member's batch."""
    z = encoders(views)
    n = views.shape[-1] // 2
    z1, z2 = z[..., :n, :], z[..., n:, :]
    if loss == "info_nce":
        return one_negative_info_nce(z1, z2).sum()
    normalized = second_moment_normalize(torch.cat([z1, z2], dim=-2))
    c = normalized[..., :n, :].transpose(-1, -2) @ normalized[..., n:, :] / n
    diagonal = c.diagonal(dim1=-2, dim2=-1)
    off = c - torch.diag_embed(diagonal)
    return (1 - diagonal).pow(2).sum() + lam * off.pow(2).sum()


def train_lattice_encoders(
    augmentation: RotationAugmentation,
    loss: Literal["info_nce", "cross_correlation"],
    *,
    seeds: list[int],
    radius: float,
    steps: int,
    generator: torch.Generator,
    radius_start: float | None = None,
    out_dim: int = 2,
    hidden: int = 64,
    frequencies: int = 1,
    batch_size: int = 256,
    train_dtype: torch.dtype | None = None,
    lr: float = 1e-2,
    lambda_offdiag: float = 1.0,
    n_checkpoints: int = 10,
    progress: bool = False,
) -> tuple[LatticeEncoders, list[LatticeDiagnostics]]:
    r"""Train ``len(seeds)`` encoders at once (:class:`LatticeEncoders`) with Adam and cosine decay.

    At each step every encoder draws its own ``batch_size`` inputs (from ``generator``) and two
    independent views of each, and minimises :func:`one_negative_info_nce` (``loss="info_nce"``) or
    Huang et al.'s cross-correlation loss :math:`\sum_i(1-C_{ii})^2 + \lambda\sum_{i\ne j}C_{ij}^2`
    with the second-moment constraint (``loss="cross_correlation"``: :func:`second_moment_normalize`
    over both views of its batch, :math:`C = \tilde z_1^\top\tilde z_2/n`). The losses of the members
    are summed; their parameters are disjoint, so each member follows its own gradient (Adam is
    elementwise). The radius grows linearly from ``radius_start`` to ``radius`` over the first 70%
    of the steps (a temperature schedule: with :math:`\|f\| = r` the one-negative InfoNCE has
    inverse temperature :math:`r^2`), then stays. ``train_dtype`` (default: the data's) sets the
    precision of training; the diagnostics are always computed in the data's precision.

    Returns:
        The encoders and the exact diagnostics at ``n_checkpoints + 1`` evenly spaced steps (from 0).

    Raises:
        ValueError: for an unknown ``loss`` or invalid sizes.
    """
    if loss not in ("info_nce", "cross_correlation"):
        raise ValueError(f"loss must be 'info_nce' or 'cross_correlation', got {loss!r}")
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 2)
    _check_int("n_checkpoints", n_checkpoints, 1)
    lam = check_nonnegative("lambda_offdiag", lambda_offdiag)
    radius = check_positive("radius", radius)
    start = radius if radius_start is None else check_positive("radius_start", radius_start)
    data = augmentation.data
    device = data.weights.device
    dtype = train_dtype if train_dtype is not None else data.weights.dtype
    encoders = LatticeEncoders(list(seeds), data.n_points, hidden, out_dim, start, frequencies=frequencies,
                               dtype=dtype, device=device)
    lr = check_positive("lr", lr)
    optimiser = torch.optim.Adam(encoders.parameters(), lr=lr, foreach=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    checkpoints = {round(i * steps / n_checkpoints) for i in range(n_checkpoints + 1)}
    history = [lattice_diagnostics(encoders, augmentation, 0)]
    iterator = progress_bar(range(1, steps + 1), desc=f"training ({loss})", disable=None if progress else True)
    law = data.marginal().expand(encoders.n_models, -1)
    for step in iterator:
        encoders.radius = start + (radius - start) * min(1.0, step / (0.7 * steps))
        indices = torch.multinomial(law, batch_size, replacement=True, generator=generator)
        views = torch.cat([augmentation.sample_views(indices, generator),
                           augmentation.sample_views(indices, generator)], dim=-1)
        optimiser.zero_grad(set_to_none=True)
        _training_loss(encoders, views, loss, lam).backward()
        optimiser.step()
        schedule.step()
        if step in checkpoints:
            history.append(lattice_diagnostics(encoders, augmentation, step))
    check_finite("final embeddings", history[-1].embeddings)
    return encoders, history

