"""clkit.losses against independent computations: loop transcriptions, closed forms, autograd, numpy."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import clkit
from clkit.losses import _TiledNTXent

F64 = torch.float64
F32 = torch.float32


def _pairs(n: int, d: int, seed: int = 0, dtype=F64, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    z1 = scale * torch.randn(n, d, generator=g, dtype=dtype)
    z2 = z1 + 0.7 * scale * torch.randn(n, d, generator=g, dtype=dtype)
    return z1, z2


def _loss_and_grads(fn, z1, z2, **kwargs):
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    loss = fn(a, b, **kwargs)
    ga, gb = torch.autograd.grad(loss, (a, b))
    return loss.detach(), torch.cat([ga, gb])


def _simclr_algorithm_1(z1: torch.Tensor, z2: torch.Tensor, tau: float, normalize: bool = True) -> float:
    """SimCLR's Algorithm 1, transcribed with Python loops: views 2k-1 and 2k are the k-th pair."""
    views = []
    for k in range(z1.shape[0]):
        views += [z1[k].tolist(), z2[k].tolist()]

    def sim(u, v):
        dot = sum(a * b for a, b in zip(u, v))
        if not normalize:
            return dot
        return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    def ell(i, j):
        numerator = math.exp(sim(views[i], views[j]) / tau)
        denominator = sum(math.exp(sim(views[i], views[k]) / tau) for k in range(len(views)) if k != i)
        return -math.log(numerator / denominator)

    total = sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(z1.shape[0]))
    return total / len(views)


# --- info_nce: conventions -------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 5, 3])
def test_info_nce_equals_loop_transcription_of_simclr_algorithm_1(normalize, chunk_size):
    z1, z2 = _pairs(6, 4, seed=1)
    reference = _simclr_algorithm_1(z1, z2, 0.4, normalize)
    loss = clkit.info_nce(z1, z2, temperature=0.4, normalize=normalize, chunk_size=chunk_size)
    assert float(loss) == pytest.approx(reference, rel=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_info_nce_is_symmetric_under_swapping_the_views(chunk_size):
    z1, z2 = _pairs(9, 5, seed=2)
    a = clkit.info_nce(z1, z2, temperature=0.3, chunk_size=chunk_size)
    b = clkit.info_nce(z2, z1, temperature=0.3, chunk_size=chunk_size)
    assert float(a) == pytest.approx(float(b), rel=1e-13)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_info_nce_of_coinciding_embeddings_is_log_2n_minus_1(n, chunk_size):
    z = torch.full((n, 3), 0.8, dtype=F64)
    for tau in (0.05, 1.0):
        loss = clkit.info_nce(z, z.clone(), temperature=tau, chunk_size=chunk_size)
        assert float(loss) == pytest.approx(math.log(2 * n - 1), abs=1e-12)


def test_info_nce_keeps_the_positional_signature_of_chapter_01():
    z1, z2 = _pairs(5, 3)
    assert float(clkit.info_nce(z1, z2, 0.5, True)) == float(clkit.info_nce(z1, z2))


# --- info_nce: chunked path ------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n,chunk_size", [(40, 1), (40, 16), (40, 79), (33, 7)])
def test_chunked_info_nce_matches_dense_in_float64(normalize, n, chunk_size):
    z1, z2 = _pairs(n, 6, seed=3)
    dense = _loss_and_grads(clkit.info_nce, z1, z2, temperature=0.2, normalize=normalize, chunk_size=2 * n)
    tiled = _loss_and_grads(clkit.info_nce, z1, z2, temperature=0.2, normalize=normalize, chunk_size=chunk_size)
    assert float(tiled[0]) == pytest.approx(float(dense[0]), rel=1e-12)
    assert float((tiled[1] - dense[1]).norm() / dense[1].norm()) < 1e-12


@pytest.mark.parametrize("n,chunk_size", [(160, 128), (129, 100)])
def test_chunked_info_nce_matches_dense_in_float32(n, chunk_size):
    # Cosine logits are bounded by 1/tau, so float32 rounding stays at a few ulps of the loss.
    z1, z2 = _pairs(n, 32, seed=4, dtype=F32)
    dense = _loss_and_grads(clkit.info_nce, z1, z2, temperature=0.3, chunk_size=2 * n)
    tiled = _loss_and_grads(clkit.info_nce, z1, z2, temperature=0.3, chunk_size=chunk_size)
    assert float(tiled[0]) == pytest.approx(float(dense[0]), rel=1e-6)
    assert float((tiled[1] - dense[1]).norm() / dense[1].norm()) < 1e-6


def test_chunked_info_nce_matches_dense_unnormalised_float32_within_dot_product_rounding():
    # |fl(<u,v>) - <u,v>| <= d u |u||v| (u = eps/2) for each path, and the loss is 1-Lipschitz in the
    # logits through both the log-sum-exp and the positive term: |dL| <= 2 d eps max|z_i||z_k| / tau.
    n, d, tau = 200, 32, 0.5
    z1, z2 = _pairs(n, d, seed=5, dtype=F32)
    dense = clkit.info_nce(z1, z2, tau, normalize=False, chunk_size=2 * n)
    tiled = clkit.info_nce(z1, z2, tau, normalize=False, chunk_size=64)
    max_norm = float(torch.cat([z1, z2]).norm(dim=1).max())
    bound = 2 * d * torch.finfo(F32).eps * max_norm**2 / tau
    assert abs(float(tiled) - float(dense)) <= bound


def test_auto_chunk_size_is_dense_for_small_batches_and_tiled_beyond():
    assert clkit.info_nce_chunk_size(10) is None
    assert clkit.info_nce_chunk_size(1024) is None
    tile = clkit.info_nce_chunk_size(1025)
    assert isinstance(tile, int) and tile < 2 * 1025


def test_chunked_path_saves_only_linear_memory_for_backward():
    n, d = 64, 5
    z1, z2 = _pairs(n, d, seed=6)
    z1.requires_grad_()
    saved: list[int] = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        clkit.info_nce(z1, z2, temperature=0.5, chunk_size=16)
    assert saved and max(saved) <= 2 * n * d < (2 * n) ** 2


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk_size", [3, 8])
def test_info_nce_gradient_passes_gradcheck_in_float64(normalize, chunk_size):
    z1, z2 = _pairs(4, 3, seed=7)
    z1.requires_grad_()
    z2.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: clkit.info_nce(a, b, temperature=0.7, normalize=normalize, chunk_size=chunk_size), (z1, z2)
    )


def test_tiled_nt_xent_terms_pass_gradcheck_with_arbitrary_upstream_gradient():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(8, 3, generator=g, dtype=F64, requires_grad=True)
    weights = torch.randn(8, generator=g, dtype=F64)
    assert torch.autograd.gradcheck(lambda x: (weights * _TiledNTXent.apply(x, 4, 3)).sum(), (z,))


# --- stability -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_info_nce_is_finite_and_accurate_at_temperature_1e_3_in_float32(chunk_size):
    z1, z2 = _pairs(40, 8, seed=9, dtype=F32)
    loss32, grad32 = _loss_and_grads(clkit.info_nce, z1, z2, temperature=1e-3, chunk_size=chunk_size)
    loss64, _ = _loss_and_grads(clkit.info_nce, z1.double(), z2.double(), temperature=1e-3, chunk_size=chunk_size)
    assert torch.isfinite(loss32) and torch.isfinite(grad32).all()
    # each term log-sum-exp minus one of its own logits is >= 0, also after rounding
    assert float(loss32) >= 0.0
    # cosine logits up to 1/tau = 1e3, each with float32 error ~ d eps: the bound of the test above
    assert abs(float(loss32) - float(loss64)) <= 2 * 8 * torch.finfo(F32).eps * 1e3


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_info_nce_is_finite_for_large_norm_unnormalised_inputs(chunk_size):
    z1, z2 = _pairs(40, 8, seed=10, dtype=F32, scale=1e3)
    loss, grad = _loss_and_grads(clkit.info_nce, z1, z2, temperature=0.1, normalize=False, chunk_size=chunk_size)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert float(loss) >= 0.0


def test_clip_and_pair_info_nce_are_finite_at_temperature_1e_3_and_large_norms():
    z1, z2 = _pairs(30, 8, seed=11, dtype=F32, scale=1e3)
    for fn, kwargs in ((clkit.clip_loss, {"temperature": 1e-3}), (clkit.pair_info_nce, {"temperature": 1e-3}),
                       (clkit.pair_info_nce, {"temperature": 1.0})):
        loss, grad = _loss_and_grads(fn, z1, z2, **kwargs)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_info_nce_is_deterministic_for_a_given_seed():
    a = clkit.info_nce(*_pairs(50, 4, seed=12), chunk_size=16)
    b = clkit.info_nce(*_pairs(50, 4, seed=12), chunk_size=16)
    assert float(a) == float(b)


def test_info_nce_returns_on_the_inputs_device_and_dtype():
    device = clkit.default_device()
    z1, z2 = (t.to(device) for t in _pairs(20, 3, dtype=F32))
    for chunk_size in (None, 8):
        loss = clkit.info_nce(z1, z2, chunk_size=chunk_size)
        assert loss.device == z1.device and loss.dtype == F32 and loss.dim() == 0


# --- CLIP and pair InfoNCE -------------------------------------------------------------------------


def _clip_loop(za, zb, tau, normalize):
    a, b = za.tolist(), zb.tolist()
    if normalize:
        a = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in a]
        b = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in b]
    n = len(a)
    s = [[sum(x * y for x, y in zip(a[i], b[j])) / tau for j in range(n)] for i in range(n)]
    rows = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)) / n
    cols = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (rows + cols)


@pytest.mark.parametrize("normalize", [True, False])
def test_clip_loss_equals_loop_average_of_the_two_cross_entropies(normalize):
    za, zb = _pairs(7, 4, seed=13)
    loss = clkit.clip_loss(za, zb, temperature=0.6, normalize=normalize)
    assert float(loss) == pytest.approx(_clip_loop(za, zb, 0.6, normalize), rel=1e-12)


def test_clip_loss_is_symmetric_in_its_modalities_and_passes_gradcheck():
    za, zb = _pairs(5, 3, seed=14)
    assert float(clkit.clip_loss(za, zb, 0.5)) == pytest.approx(float(clkit.clip_loss(zb, za, 0.5)), rel=1e-13)
    za.requires_grad_()
    zb.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: clkit.clip_loss(a, b, 0.5), (za, zb))


def _pair_info_nce_loop(z, zp, tau):
    a, b = z.tolist(), zp.tolist()
    n = len(a)
    s = [[sum(x * y for x, y in zip(a[i], b[j])) / tau for j in range(n)] for i in range(n)]
    return -sum(
        math.log(math.exp(s[i][i]) / (sum(math.exp(s[i][j]) for j in range(n) if j != i) / (n - 1)))
        for i in range(n)
    ) / n


def test_pair_info_nce_equals_loop_transcription_of_seed_004():
    z, zp = _pairs(8, 3, seed=15)
    loss = clkit.pair_info_nce(z, zp, temperature=0.9)
    assert float(loss) == pytest.approx(_pair_info_nce_loop(z, zp, 0.9), rel=1e-12)


def test_pair_info_nce_of_two_pairs_has_closed_form():
    # N = 2: each denominator is the single other partner, so L = mean_i (s_ij - s_ii), j != i.
    z, zp = _pairs(2, 3, seed=16)
    s = z @ zp.T
    expected = 0.5 * float((s[0, 1] - s[0, 0]) + (s[1, 0] - s[1, 1]))
    assert float(clkit.pair_info_nce(z, zp)) == pytest.approx(expected, rel=1e-12)


# --- cross-correlation ------------------------------------------------------------------------------


def test_cross_correlation_loss_uses_pearson_correlations_when_standardising():
    z1, z2 = _pairs(30, 4, seed=18)
    d = z1.shape[1]
    corr = np.corrcoef(z1.numpy().T, z2.numpy().T)[:d, d:]
    expected = float(((1 - np.diag(corr)) ** 2).sum() + 0.01 * ((corr - np.diag(np.diag(corr))) ** 2).sum())
    assert float(clkit.cross_correlation_loss(z1, z2, lambda_offdiag=0.01)) == pytest.approx(expected, rel=1e-12)


def test_cross_correlation_loss_matches_barlow_twins_batchnorm_convention():
    z1, z2 = _pairs(25, 3, seed=19)
    bn = torch.nn.BatchNorm1d(3, affine=False, eps=1e-12).double().train()  # eps must be > 0
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    off = c - torch.diag(torch.diagonal(c))
    expected = float((1 - torch.diagonal(c)).pow(2).sum() + 5e-3 * off.pow(2).sum())
    assert float(clkit.cross_correlation_loss(z1, z2)) == pytest.approx(expected, rel=1e-10)


def test_cross_correlation_loss_without_standardising_uses_raw_second_moments():
    z1, z2 = _pairs(10, 3, seed=20)
    c = np.einsum("ni,nj->ij", z1.numpy(), z2.numpy()) / 10
    expected = ((1 - np.diag(c)) ** 2).sum() + 0.1 * (c**2).sum() - 0.1 * (np.diag(c) ** 2).sum()
    loss = clkit.cross_correlation_loss(z1, z2, lambda_offdiag=0.1, standardize=False)
    assert float(loss) == pytest.approx(float(expected), rel=1e-12)


def test_cross_correlation_loss_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=F64)
    assert float(clkit.cross_correlation_loss(z, z.clone(), lambda_offdiag=1.0)) == pytest.approx(0.0, abs=1e-15)


def test_cross_correlation_loss_passes_gradcheck():
    z1, z2 = _pairs(6, 3, seed=21)
    z1.requires_grad_()
    z2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: clkit.cross_correlation_loss(a, b, 0.05), (z1, z2))


# --- bad inputs -------------------------------------------------------------------------------------

GOOD = _pairs(4, 3)


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: clkit.info_nce(GOOD[0], GOOD[1][:3]), "z2"),
        (lambda: clkit.info_nce(GOOD[0][0], GOOD[1][0]), "z1"),
        (lambda: clkit.info_nce(GOOD[0][:0], GOOD[1][:0]), "z1"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], temperature=0.0), "temperature"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], temperature=-1.0), "temperature"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], temperature=math.nan), "temperature"),
        (lambda: clkit.info_nce(GOOD[0].clone().fill_(math.nan), GOOD[1]), "z1"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1].clone().fill_(math.inf)), "z2"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1].float()), "z1"),
        (lambda: clkit.info_nce(GOOD[0].long(), GOOD[1].long()), "z1"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], chunk_size=0), "chunk_size"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], chunk_size=2.5), "chunk_size"),
        (lambda: clkit.info_nce(GOOD[0], GOOD[1], chunk_size=True), "chunk_size"),
        (lambda: clkit.info_nce(GOOD[0].tolist(), GOOD[1]), "z1"),
        (lambda: clkit.info_nce_chunk_size(0), "n_pairs"),
        (lambda: clkit.clip_loss(GOOD[0], GOOD[1][:, :2]), "z_b"),
        (lambda: clkit.clip_loss(GOOD[0], GOOD[1], temperature=0.0), "temperature"),
        (lambda: clkit.pair_info_nce(GOOD[0][:1], GOOD[1][:1]), "z"),
        (lambda: clkit.pair_info_nce(GOOD[0], GOOD[1].clone().fill_(math.nan)), "z_partner"),
        (lambda: clkit.pair_info_nce(GOOD[0], GOOD[1], temperature=-2.0), "temperature"),
        (lambda: clkit.cross_correlation_loss(GOOD[0], GOOD[1], lambda_offdiag=-1.0), "lambda_offdiag"),
        (lambda: clkit.cross_correlation_loss(GOOD[0], torch.ones_like(GOOD[1])), "z2"),
        (lambda: clkit.cross_correlation_loss(GOOD[0][:1], GOOD[1][:1]), "z1"),
        (lambda: clkit.cross_correlation_loss(GOOD[0], GOOD[1][:2]), "z2"),
        (lambda: clkit.cross_correlation_loss(torch.ones_like(GOOD[0]), GOOD[1]), "z1"),
        (lambda: clkit.cross_correlation_loss(GOOD[0][0], GOOD[1]), "z1"),
        (lambda: clkit.cross_correlation_loss(GOOD[0], GOOD[1].clone().fill_(math.nan)), "z2"),
        (lambda: clkit.info_nce_chunk_size(1.5), "n_pairs"),
        (lambda: clkit.info_nce_chunk_size(True), "n_pairs"),
        (lambda: clkit.info_nce_chunk_size(-3), "n_pairs"),
        (lambda: clkit.clip_loss(GOOD[0][0], GOOD[1]), "z_a"),
        (lambda: clkit.clip_loss(GOOD[0].clone().fill_(math.inf), GOOD[1]), "z_a"),
        (lambda: clkit.clip_loss(GOOD[0], GOOD[1].clone().fill_(math.nan)), "z_b"),
        (lambda: clkit.clip_loss(GOOD[0], GOOD[1], temperature=-1.0), "temperature"),
        (lambda: clkit.pair_info_nce(GOOD[0][0], GOOD[1]), "z"),
        (lambda: clkit.pair_info_nce(GOOD[0], GOOD[1], temperature=0.0), "temperature"),
        (lambda: clkit.info_nce_collapse_value(0), "n_pairs"),
        (lambda: clkit.info_nce_collapse_value(2.0), "n_pairs"),
        (lambda: clkit.info_nce_collapse_value(True), "n_pairs"),
        (lambda: clkit.info_nce_lower_bound(0, 0.5), "n_pairs"),
        (lambda: clkit.info_nce_lower_bound(1.5, 0.5), "n_pairs"),
        (lambda: clkit.info_nce_lower_bound(False, 0.5), "n_pairs"),
        (lambda: clkit.info_nce_lower_bound(3, 0.0), "temperature"),
        (lambda: clkit.info_nce_lower_bound(3, -1.0), "temperature"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, argument):
    # the argument's name as a word (so that a message naming "z_partner" does not pass for "z")
    with pytest.raises(ValueError, match=rf"(?<![\w]){re.escape(argument)}(?![\w])"):
        call()


def test_bad_input_messages_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"^z1 must have at least 1 rows, got 0$"):
        clkit.info_nce(GOOD[0][:0], GOOD[1][:0])
    with pytest.raises(ValueError, match=r"^z must have at least 2 rows, got 1$"):
        clkit.pair_info_nce(GOOD[0][:1], GOOD[1][:1])
    with pytest.raises(ValueError, match=r"must be floating point"):
        clkit.info_nce(GOOD[0], GOOD[1].long())
    with pytest.raises(ValueError, match=r"must be floating point"):
        clkit.info_nce(GOOD[0].long(), GOOD[1])
    # one row cannot be standardised: refused for its size, before any variance is computed
    with pytest.raises(ValueError, match=r"^z1 must have at least 2 rows, got 1$"):
        clkit.cross_correlation_loss(GOOD[0][:1], GOOD[1][:1])
    with pytest.raises(ValueError, match=r"^z2 has a feature with zero variance"):
        clkit.cross_correlation_loss(GOOD[0], torch.ones_like(GOOD[1]))


@pytest.mark.parametrize("n", [1, 4])
def test_chunk_size_of_2n_is_the_dense_autograd_path_and_smaller_is_tiled(n):
    # documented: chunk_size >= 2N is the dense path (plain autograd), smaller values tile
    z1, z2 = _pairs(n, 3, seed=28)
    z1.requires_grad_()
    dense = clkit.info_nce(z1, z2, chunk_size=2 * n)
    assert "Nll" in type(dense.grad_fn).__name__  # F.cross_entropy
    assert "Nll" in type(clkit.info_nce(z1, z2, chunk_size=2 * n + 1).grad_fn).__name__
    assert "Nll" in type(clkit.info_nce(z1, z2).grad_fn).__name__
    if 2 * n - 1 >= 1:
        tiled = clkit.info_nce(z1, z2, chunk_size=2 * n - 1)
        assert "Nll" not in type(tiled.grad_fn).__name__
        assert float(tiled.detach()) == pytest.approx(float(dense.detach()), rel=1e-12)


# --- defaults, edge sizes and the cosine variants ----------------------------------------------------


def test_clip_loss_defaults_are_cosine_similarity_at_temperature_one():
    za, zb = _pairs(6, 3, seed=22, scale=3.0)
    assert float(clkit.clip_loss(za, zb)) == pytest.approx(_clip_loop(za, zb, 1.0, True), rel=1e-12)
    assert float(clkit.clip_loss(za, zb, normalize=False)) == pytest.approx(_clip_loop(za, zb, 1.0, False), rel=1e-12)


def test_clip_loss_of_a_single_pair_is_zero():
    # N = 1: each cross-entropy has one class, so both terms are -log 1 = 0 (and N = 1 is allowed)
    za, zb = _pairs(1, 4, seed=23)
    assert float(clkit.clip_loss(za, zb, temperature=0.3)) == 0.0


def test_pair_info_nce_defaults_and_cosine_variant_match_the_loop():
    z, zp = _pairs(7, 4, seed=24, scale=2.5)
    assert float(clkit.pair_info_nce(z, zp)) == pytest.approx(_pair_info_nce_loop(z, zp, 1.0), rel=1e-12)
    zn, zpn = z / z.norm(dim=1, keepdim=True), zp / zp.norm(dim=1, keepdim=True)
    loss = clkit.pair_info_nce(z, zp, temperature=0.4, normalize=True)
    assert float(loss) == pytest.approx(_pair_info_nce_loop(zn, zpn, 0.4), rel=1e-12)
    # normalising only one side is a different number: both sides must be normalised
    assert float(loss) != pytest.approx(_pair_info_nce_loop(zn, zp, 0.4), rel=1e-6)
    assert float(loss) != pytest.approx(_pair_info_nce_loop(z, zpn, 0.4), rel=1e-6)


def test_cross_correlation_loss_edge_batch_sizes():
    # standardize=False accepts a single row: C = z1^T z2 (raw second moments of one sample)
    z1, z2 = _pairs(1, 3, seed=25)
    c = np.outer(z1.numpy()[0], z2.numpy()[0])
    expected = ((1 - np.diag(c)) ** 2).sum() + 0.2 * ((c - np.diag(np.diag(c))) ** 2).sum()
    assert float(clkit.cross_correlation_loss(z1, z2, 0.2, standardize=False)) == pytest.approx(expected, rel=1e-12)
    # standardize=True accepts two rows: every standardised feature is (+-1, -+1), so C_ij = +-1
    z1, z2 = _pairs(2, 3, seed=26)
    sign = np.sign(z1.numpy()[0] - z1.numpy()[1])[:, None] * np.sign(z2.numpy()[0] - z2.numpy()[1])[None, :]
    expected = ((1 - np.diag(sign)) ** 2).sum() + 0.3 * ((sign - np.diag(np.diag(sign))) ** 2).sum()
    assert float(clkit.cross_correlation_loss(z1, z2, 0.3)) == pytest.approx(expected, rel=1e-12)
    # the default weight is Barlow Twins' 5e-3
    z1, z2 = _pairs(9, 3, seed=27)
    assert float(clkit.cross_correlation_loss(z1, z2)) == pytest.approx(
        float(clkit.cross_correlation_loss(z1, z2, lambda_offdiag=5e-3)), rel=1e-15)
    assert float(clkit.cross_correlation_loss(z1, z2)) != pytest.approx(
        float(clkit.cross_correlation_loss(z1, z2, lambda_offdiag=6e-3)), rel=1e-9)


# --- closed forms of chapter 1: the collapse value and the lower bound ---------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 257])
def test_collapse_value_is_the_loss_of_coinciding_embeddings(n):
    # independent route: the loss itself, evaluated at a collapsed batch (all rows equal)
    z = torch.full((n, 4), -0.3, dtype=F64)
    for tau in (0.1, 2.0):
        loss = clkit.info_nce(z, z.clone(), temperature=tau)
        assert clkit.info_nce_collapse_value(n) == pytest.approx(float(loss), abs=1e-12)
    assert isinstance(clkit.info_nce_collapse_value(np.int64(n)), float)


def _antipodal_pairs(d: int = 3):
    e = torch.zeros(2, d, dtype=F64)
    e[0, 0], e[1, 0] = 1.0, -1.0  # pair 1 at +e1, pair 2 at -e1: every negative has similarity -1
    return e, e.clone()


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 3.0])
def test_lower_bound_is_attained_by_two_antipodal_pairs(tau):
    z1, z2 = _antipodal_pairs()
    loss = clkit.info_nce(z1, z2, temperature=tau)
    # each anchor: log(1 + 2 exp(-2/tau)), the bound at N = 2, computed here from its definition
    assert float(loss) == pytest.approx(math.log(1 + 2 * math.exp(-2 / tau)), rel=1e-12)
    assert clkit.info_nce_lower_bound(2, tau) == pytest.approx(float(loss), rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_lower_bound_holds_and_is_the_documented_expression(n):
    for seed, tau in enumerate((0.1, 0.5, 2.0)):
        z1, z2 = _pairs(n, 3, seed=30 + seed)
        bound = clkit.info_nce_lower_bound(n, tau)
        assert bound == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-2 / tau)), rel=1e-14)
        assert bound <= float(clkit.info_nce(z1, z2, temperature=tau)) + 1e-12
    assert clkit.info_nce_lower_bound(1, 0.7) == 0.0  # no negatives besides the positive's partner


def test_collapse_value_and_lower_bound_accept_sympy_symbols_and_agree_with_numbers():
    sympy = pytest.importorskip("sympy")
    n, tau = sympy.symbols("N tau", positive=True)
    collapse = clkit.info_nce_collapse_value(n)
    bound = clkit.info_nce_lower_bound(n, tau)
    # numbers first (a wrong symbolic form fails here at once; simplify could take long on it)
    for n_val, tau_val in ((3, 0.4), (11, 1.7)):
        assert float(collapse.subs(n, n_val)) == pytest.approx(clkit.info_nce_collapse_value(n_val), rel=1e-14)
        assert float(bound.subs({n: n_val, tau: tau_val})) == pytest.approx(
            clkit.info_nce_lower_bound(n_val, tau_val), rel=1e-14)
    assert sympy.simplify(collapse - sympy.log(2 * n - 1)) == 0
    assert sympy.simplify(bound - sympy.log(1 + (2 * n - 2) * sympy.exp(-2 / tau))) == 0
    # one symbolic argument is enough for a symbolic answer (the other one a plain number)
    half_symbolic = clkit.info_nce_lower_bound(n, 2)
    assert half_symbolic.free_symbols == {n}
    assert float(half_symbolic.subs(n, 5)) == pytest.approx(math.log(1 + 8 * math.exp(-1)), rel=1e-14)
    half_symbolic = clkit.info_nce_lower_bound(3, tau)
    assert half_symbolic.free_symbols == {tau}
    assert float(half_symbolic.subs(tau, 0.7)) == pytest.approx(math.log(1 + 4 * math.exp(-2 / 0.7)), rel=1e-14)
