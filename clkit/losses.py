r"""Contrastive losses: NT-Xent (SimCLR), CLIP, one-way pair InfoNCE, cross-correlation (Barlow Twins).

Every loss is computed with log-sum-exp, so it stays finite (with finite gradients) for temperatures
down to ``1e-3`` in float32 and for unnormalised embeddings of large norm (as long as the logits
:math:`\langle z_i, z_k\rangle/\tau` themselves are representable in the dtype).

``info_nce`` is SimCLR's NT-Xent (Chen et al. 2020, Algorithm 1; the formula of Gui et al.'s poster):
for a batch of :math:`N` pairs there are :math:`2N` views :math:`z_1,\dots,z_{2N}`; view :math:`i`'s
positive :math:`p(i)` is its partner and

.. math::
    \mathcal L = \frac{1}{2N}\sum_{i=1}^{2N} -\log
      \frac{\exp(\mathrm{sim}(z_i, z_{p(i)})/\tau)}{\sum_{k\ne i}\exp(\mathrm{sim}(z_i, z_k)/\tau)},
    \qquad \mathrm{sim}(z, z') = \Big\langle \frac{z}{\|z\|}, \frac{z'}{\|z'\|}\Big\rangle.

For large batches it switches by itself to a tiled ("chunked") evaluation that never materialises
the :math:`2N\times 2N` similarity matrix: the forward pass keeps only the :math:`2N` row
log-sum-exps, the backward pass recomputes the tiles. Memory is linear in :math:`N`; the loss and
its gradient are the same numbers up to floating-point rounding.
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ._validation import check_finite, check_nonnegative, check_positive, check_shape

__all__ = [
    "info_nce", "clip_loss", "pair_info_nce", "cross_correlation_loss", "info_nce_chunk_size",
    "info_nce_collapse_value", "info_nce_lower_bound",
]

# Auto path of ``info_nce``: dense while the 2N x 2N matrix has at most this many rows, tiled with
# this tile size beyond (chosen from benchmarks/bench_losses.py on a 2-core CPU: at N >= 2048 the
# tiled path is faster than dense, 1024-row tiles stay in cache).
_AUTO_DENSE_MAX_ROWS = 2048
_AUTO_TILE = 1024


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, min_rows: int) -> None:
    check_shape(name_a, a, (None, None))
    check_shape(name_b, b, tuple(a.shape))
    if a.shape[0] < min_rows:
        raise ValueError(f"{name_a} must have at least {min_rows} rows, got {a.shape[0]}")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"{name_a} and {name_b} must be floating point, got {a.dtype} and {b.dtype}")
    if a.dtype != b.dtype:
        raise ValueError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")
    check_finite(name_a, a)
    check_finite(name_b, b)


def info_nce_chunk_size(n_pairs: int) -> int | None:
    """The tile size ``info_nce(..., chunk_size=None)`` uses for ``n_pairs`` pairs (``None``: dense).

    Dense while the :math:`2N\\times2N` similarity matrix has at most 2048 rows, tiles of 1024 rows
    beyond (the cross-over measured by ``benchmarks/bench_losses.py``).

    Raises:
        ValueError: if ``n_pairs`` is not a positive integer.
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, Integral) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    return None if 2 * int(n_pairs) <= _AUTO_DENSE_MAX_ROWS else _AUTO_TILE


def _tiles(n_rows: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(start + tile, n_rows)) for start in range(0, n_rows, tile)]


def _tiled_logsumexp_and_positive(z: torch.Tensor, n: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``lse[i] = log sum_{k != i} exp(<z_i, z_k>)`` and ``pos[i] = <z_i, z_{p(i)}>``, ``p(i) = i +- n``.

    Only the upper-triangular tiles :math:`S_{rc}=z_r z_c^\top` (:math:`r\le c`) are computed: each
    serves rows :math:`r` through its rows and rows :math:`c` through its columns
    (:math:`S_{cr}=S_{rc}^\top`); partial log-sum-exps are merged with ``logaddexp``. The positives
    are read from the same tiles, so ``lse[i] - pos[i]`` has the rounding of the dense path.
    """
    rows = z.shape[0]
    blocks = _tiles(rows, tile)
    lse = torch.full((rows,), -math.inf, dtype=z.dtype, device=z.device)
    pos = torch.empty(rows, dtype=z.dtype, device=z.device)
    index = torch.arange(rows, device=z.device)
    partner = index.roll(n)
    for bi, (r0, r1) in enumerate(blocks):
        z_r = z[r0:r1]
        for c0, c1 in blocks[bi:]:
            s = z_r @ z[c0:c1].T
            if c0 == r0:
                s.fill_diagonal_(-math.inf)
            torch.logaddexp(lse[r0:r1], torch.logsumexp(s, dim=1), out=lse[r0:r1])
            if c0 != r0:
                torch.logaddexp(lse[c0:c1], torch.logsumexp(s, dim=0), out=lse[c0:c1])
            # the partner pairs (i, p(i)) with i in rows r and p(i) in columns c; p is an involution,
            # so the same entries are the positives of the rows p(i) in c
            i = index[r0:r1]
            hit = (partner[i] >= c0) & (partner[i] < c1)
            i = i[hit]
            values = s[i - r0, partner[i] - c0]
            pos[i] = values
            pos[partner[i]] = values
    return lse, pos


class _TiledNTXent(torch.autograd.Function):
    r"""Per-anchor NT-Xent terms :math:`\ell_i=\log\sum_{k\ne i}e^{\langle z_i,z_k\rangle}-\langle z_i,z_{p(i)}\rangle`
    without the :math:`2N\times2N` matrix.

    With :math:`P_{ik}=e^{\langle z_i,z_k\rangle-\mathrm{lse}_i}` (zero on the diagonal) and upstream
    gradient :math:`g`, :math:`\nabla_z\sum_i g_i\ell_i=(G+G^\top)z-\big((g+g_{p})\odot z_{p}\big)`
    where :math:`G=\mathrm{diag}(g)P` and :math:`(z_p)_i=z_{p(i)}`; the tiles of :math:`G+G^\top`
    are recomputed from :math:`z` and :math:`\mathrm{lse}` in backward (memory :math:`O(Nd+\text{tile}^2)`).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, n: int, tile: int) -> torch.Tensor:  # type: ignore[override]
        lse, pos = _tiled_logsumexp_and_positive(z, n, tile)
        ctx.save_for_backward(z, lse)
        ctx.n, ctx.tile = n, tile
        return lse - pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        z, lse = ctx.saved_tensors
        blocks = _tiles(z.shape[0], ctx.tile)
        grad = -(grad_out + grad_out.roll(ctx.n))[:, None] * z.roll(ctx.n, dims=0)
        for bi, (r0, r1) in enumerate(blocks):
            z_r = z[r0:r1]
            lse_r, g_r = lse[r0:r1, None], grad_out[r0:r1, None]
            for c0, c1 in blocks[bi:]:
                s = z_r @ z[c0:c1].T
                if c0 == r0:
                    s.fill_diagonal_(-math.inf)
                    m = (s - lse_r).exp_().mul_(g_r)
                    # two tile-sized buffers at most: s is reused once m has been formed from it
                    grad[r0:r1].addmm_(torch.add(m, m.T, out=s), z_r)
                else:
                    m = (s - lse_r).exp_().mul_(g_r)
                    m.add_(s.sub_(lse[None, c0:c1]).exp_().mul_(grad_out[None, c0:c1]))
                    grad[r0:r1].addmm_(m, z[c0:c1])
                    grad[c0:c1].addmm_(m.T, z_r)
        return grad, None, None


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    normalize: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""NT-Xent loss of the pairs ``(z1[i], z2[i])``, averaged over all :math:`2N` anchors.

    .. math::
        \mathcal L = \frac{1}{2N}\sum_{i=1}^{2N}\Big[\log\sum_{k\ne i}e^{s_{ik}/\tau}-s_{i\,p(i)}/\tau\Big],
        \qquad z = \begin{pmatrix} z^{(1)} \\ z^{(2)}\end{pmatrix},\quad p(i) = i \pm N,

    with :math:`s_{ik}=\langle z_i,z_k\rangle/(\|z_i\|\|z_k\|)` (``normalize=True``, SimCLR's cosine
    similarity) or :math:`s_{ik}=\langle z_i,z_k\rangle` (``normalize=False``). Source: Chen et al.
    (2020), SimCLR, Algorithm 1 and Eq. (1); Gui et al. (2023), poster.

    Args:
        z1, z2: ``(N, d)`` embeddings of the two views, ``N >= 1``; row ``i`` of each is a positive pair.
        temperature: :math:`\tau > 0`.
        normalize: cosine similarity (``True``, SimCLR) or raw inner products (``False``).
        chunk_size: rows of the :math:`2N\times2N` similarity matrix held in memory at once.
            ``None`` picks by itself (:func:`info_nce_chunk_size`); ``chunk_size >= 2N`` is the dense
            path (the whole matrix, plain autograd); smaller values use the tiled path, whose memory is
            :math:`O(N d + \text{chunk\_size}^2)` and whose backward pass recomputes the tiles.

    Returns:
        A scalar tensor on the inputs' device and dtype, differentiable in ``z1`` and ``z2``
        (first order; the tiled path does not support double backward).

    Raises:
        ValueError: for inputs that are not 2-D floating tensors of the same shape, dtype and device,
            ``N < 1``, non-finite entries, ``temperature <= 0`` or ``chunk_size`` not a positive integer.
    """
    _check_pair("z1", z1, "z2", z2, min_rows=1)
    tau = check_positive("temperature", temperature)
    n = z1.shape[0]
    if chunk_size is None:
        chunk_size = info_nce_chunk_size(n) or 2 * n
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    chunk_size = int(chunk_size)
    z = torch.cat([z1, z2], dim=0)
    if normalize:
        z = F.normalize(z, dim=1)
    # Scaling by 1/sqrt(tau) once, O(N d), spares an elementwise pass over every (2N)^2 tile.
    z = z * (tau ** -0.5)
    if chunk_size >= 2 * n:
        logits = (z @ z.T).fill_diagonal_(-math.inf)
        partner = torch.arange(2 * n, device=z.device).roll(n)
        return F.cross_entropy(logits, partner)
    return _TiledNTXent.apply(z, n, chunk_size).mean()


def _is_sympy(*values: object) -> bool:
    return any(type(v).__module__.startswith("sympy") for v in values)


def info_nce_collapse_value(n_pairs: object) -> object:
    r"""NT-Xent at complete collapse (all :math:`2N` embeddings equal): :math:`\log(2N-1)`.

    Every similarity is 1, so each anchor's loss is
    :math:`-\log\big(e^{1/\tau}/((2N-1)e^{1/\tau})\big) = \log(2N-1)` for every :math:`\tau`
    (book, chapter 1, Proposition (a)). Accepts an integer ``n_pairs >= 1`` or a SymPy symbol
    (the chapter proves the step symbolically against this function).

    Raises:
        ValueError: if ``n_pairs`` is not an integer >= 1 (numbers).
    """
    if _is_sympy(n_pairs):
        import sympy

        return sympy.log(2 * n_pairs - 1)
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, Integral) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {n_pairs!r}")
    return math.log(2 * int(n_pairs) - 1)


def info_nce_lower_bound(n_pairs: object, temperature: object) -> object:
    r"""Lower bound of NT-Xent with cosine similarity: :math:`\log\big(1 + (2N-2)e^{-2/\tau}\big)`.

    Each anchor's loss is :math:`\log\big(1+\sum_{l\notin\{k,p(k)\}} e^{(s_{kl}-s_{kp(k)})/\tau}\big)`
    and every exponent is at least :math:`-2/\tau` since similarities lie in :math:`[-1, 1]`
    (book, chapter 1, Proposition (b)). Attained for :math:`N = 2` by two antipodal pairs. Accepts
    numbers or SymPy symbols.

    Raises:
        ValueError: if ``n_pairs`` is not an integer >= 1 or ``temperature <= 0`` (numbers).
    """
    if _is_sympy(n_pairs, temperature):
        import sympy

        return sympy.log(1 + (2 * n_pairs - 2) * sympy.exp(-2 / temperature))
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, Integral) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {n_pairs!r}")
    tau = check_positive("temperature", temperature)
    return math.log1p((2 * int(n_pairs) - 2) * math.exp(-2.0 / tau))


def clip_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 1.0, normalize: bool = True
) -> torch.Tensor:
    r"""CLIP's symmetric InfoNCE of the paired embeddings ``(z_a[i], z_b[i])``.

    .. math::
        \mathcal L = \frac12\Big[\frac1N\sum_i -\log\frac{e^{s_{ii}/\tau}}{\sum_j e^{s_{ij}/\tau}}
          + \frac1N\sum_j -\log\frac{e^{s_{jj}/\tau}}{\sum_i e^{s_{ij}/\tau}}\Big],
        \qquad s_{ij} = \mathrm{sim}(z^a_i, z^b_j),

    the average of the two cross-entropies of the :math:`N\times N` logit matrix (rows: ``a`` to
    ``b``; columns: ``b`` to ``a``), with cosine similarity (``normalize=True``, CLIP) or raw inner
    products. Source: Radford et al. (2021), CLIP, Figure 3; the population form is Eq. (4) of
    Bansal et al. (2024).

    Args:
        z_a, z_b: ``(N, d)`` embeddings of the two modalities, ``N >= 1``.
        temperature: :math:`\tau > 0` (CLIP learns :math:`1/\tau`; here it is fixed).
        normalize: cosine similarity (``True``) or raw inner products (``False``).

    Returns:
        A scalar tensor, differentiable in ``z_a`` and ``z_b``.

    Raises:
        ValueError: for inputs that are not 2-D floating tensors of the same shape, dtype and device,
            ``N < 1``, non-finite entries or ``temperature <= 0``.
    """
    _check_pair("z_a", z_a, "z_b", z_b, min_rows=1)
    tau = check_positive("temperature", temperature)
    if normalize:
        z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    logits = (z_a @ z_b.T) / tau
    target = torch.arange(z_a.shape[0], device=z_a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pair_info_nce(
    z: torch.Tensor, z_partner: torch.Tensor, temperature: float = 1.0, normalize: bool = False
) -> torch.Tensor:
    r"""One-way InfoNCE of pairs with unnormalised inner products (Bansal et al. 2024, seed 004).

    .. math::
        \mathcal L = -\frac1N\sum_{i=1}^N\log
          \frac{\exp(\langle z_i, \hat z_i\rangle/\tau)}{\frac{1}{N-1}\sum_{j\ne i}\exp(\langle z_i,\hat z_j\rangle/\tau)},

    the empirical version of :math:`-\mathbb E_x\log\big[e^{f(x)^\top f(\hat x)}/\mathbb E_y
    e^{f(x)^\top f(y)}\big]`: for each anchor the mean over the other :math:`N-1` partners is an
    unbiased estimate of the population :math:`\mathbb E_y` (the positive is not in the denominator).
    ``normalize=True`` replaces inner products by cosine similarities.

    Args:
        z, z_partner: ``(N, d)`` embeddings, ``N >= 2``; ``z_partner[i]`` is the partner of ``z[i]``.
        temperature: :math:`\tau > 0` (the paper's form has :math:`\tau = 1`).
        normalize: cosine similarity instead of the raw inner product.

    Returns:
        A scalar tensor, differentiable in ``z`` and ``z_partner``.

    Raises:
        ValueError: for inputs that are not 2-D floating tensors of the same shape, dtype and device,
            ``N < 2``, non-finite entries or ``temperature <= 0``.
    """
    _check_pair("z", z, "z_partner", z_partner, min_rows=2)
    tau = check_positive("temperature", temperature)
    if normalize:
        z, z_partner = F.normalize(z, dim=1), F.normalize(z_partner, dim=1)
    n = z.shape[0]
    logits = (z @ z_partner.T) / tau
    positive = logits.diagonal()
    negatives = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), -math.inf)
    return (torch.logsumexp(negatives, dim=1) - math.log(n - 1) - positive).mean()


def cross_correlation_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5e-3, standardize: bool = True
) -> torch.Tensor:
    r"""Barlow Twins' cross-correlation loss (Zbontar et al. 2021, Eq. 1; Huang et al. 2023, Sec. 4).

    .. math::
        \mathcal L = \sum_{i}(1-C_{ii})^2 + \lambda\sum_{i}\sum_{j\ne i}C_{ij}^2,
        \qquad C = \frac1N\,\tilde z_1^\top\tilde z_2 \in\mathbb R^{d\times d}.

    Convention: with ``standardize=True`` each feature (column) is centred by its batch mean and
    divided by its *biased* batch standard deviation
    :math:`\tilde z_{:,k}=(z_{:,k}-\bar z_k)/\sqrt{\frac1N\sum_n(z_{nk}-\bar z_k)^2}`, so that
    :math:`C` is the matrix of empirical (Pearson) cross-correlations and :math:`|C_{ij}|\le 1`;
    this is Barlow Twins' ``BatchNorm1d(affine=False)`` in training mode without its
    :math:`\epsilon=10^{-5}`. With ``standardize=False``, :math:`\tilde z=z` and
    :math:`C_{ij}=\frac1N\sum_n z^{(1)}_{ni}z^{(2)}_{nj}` is the raw second-moment form
    :math:`\mathbb E[f_i(x_1)f_j(x_2)]` of Huang et al.

    Args:
        z1, z2: ``(N, d)`` embeddings of the two views (``N >= 2`` when standardising).
        lambda_offdiag: :math:`\lambda \ge 0`, weight of the redundancy-reduction term.
        standardize: standardise each feature over the batch first (see above).

    Returns:
        A scalar tensor, differentiable in ``z1`` and ``z2``.

    Raises:
        ValueError: for inputs that are not 2-D floating tensors of the same shape, dtype and device,
            too few rows, non-finite entries, ``lambda_offdiag < 0``, or (``standardize=True``) a
            feature with zero variance over the batch.
    """
    _check_pair("z1", z1, "z2", z2, min_rows=2 if standardize else 1)
    lam = check_nonnegative("lambda_offdiag", lambda_offdiag)
    n = z1.shape[0]
    if standardize:
        z1, z2 = _standardize("z1", z1), _standardize("z2", z2)
    c = (z1.T @ z2) / n
    diagonal = c.diagonal()
    # Masking (not subtracting the diagonal's squares) keeps a small off-diagonal term exact in float32.
    off_diagonal = c - torch.diag_embed(diagonal)
    return (1.0 - diagonal).pow(2).sum() + lam * off_diagonal.pow(2).sum()


def _standardize(name: str, z: torch.Tensor) -> torch.Tensor:
    centred = z - z.mean(dim=0)
    std = centred.pow(2).mean(dim=0).sqrt()
    if (std == 0).any():
        raise ValueError(f"{name} has a feature with zero variance over the batch; it cannot be standardised")
    return centred / std
