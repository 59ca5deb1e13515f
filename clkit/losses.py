r"""Contrastive losses.

``info_nce`` is SimCLR's NT-Xent (Chen et al. 2020; the formula of Gui et al.'s poster): for a batch
of :math:`N` pairs there are :math:`2N` views :math:`z_1,\dots,z_{2N}`; view :math:`i`'s positive
:math:`p(i)` is its partner and

.. math::
    \mathcal L = \frac{1}{2N}\sum_{i=1}^{2N} -\log
      \frac{\exp(\mathrm{sim}(z_i, z_{p(i)})/\tau)}{\sum_{k\ne i}\exp(\mathrm{sim}(z_i, z_k)/\tau)},
    \qquad \mathrm{sim}(z, z') = \Big\langle \frac{z}{\|z\|}, \frac{z'}{\|z'\|}\Big\rangle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validation import check_finite, check_positive, check_shape

__all__ = ["info_nce"]


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, normalize: bool = True) -> torch.Tensor:
    r"""NT-Xent loss of the pairs ``(z1[i], z2[i])``, averaged over all :math:`2N` anchors.

    Args:
        z1, z2: ``(N, d)`` embeddings of the two views; row ``i`` of each is a positive pair.
        temperature: :math:`\tau > 0`.
        normalize: cosine similarity (``True``, SimCLR) or raw inner products (``False``).

    Returns:
        A scalar tensor on the inputs' device, differentiable in ``z1`` and ``z2``.

    Raises:
        ValueError: for shapes that differ or are not 2-D, ``temperature <= 0``, non-finite input.
    """
    check_shape("z1", z1, (None, None))
    check_shape("z2", z2, tuple(z1.shape))
    check_finite("z1", z1)
    check_finite("z2", z2)
    tau = check_positive("temperature", temperature)
    n = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    if normalize:
        z = F.normalize(z, dim=1)
    logits = (z @ z.T) / tau
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, partner)
