r"""Fitting a linear map :math:`f(x) = A^\top x` to samples with the pair InfoNCE loss.

The sample loss is :func:`clkit.pair_info_nce` (Bansal, Kavis & Sanghavi 2024, InfoNCE slide, on
a finite set of augmentation pairs). Two fits:

* :func:`train_pair_info_nce_minibatch` (and :func:`train_pair_info_nce_minibatch_batched`, S
  independent sets at once): minibatch Adam or SGD from ``torch.optim`` with a linearly decaying
  learning rate (``torch.optim.lr_scheduler.LambdaLR``);
* :func:`minimize_pair_info_nce_rank_one`: the full-batch minimiser for :math:`r = 1` by
  saddle-free :func:`clkit.damped_newton` on the exact analytic gradient and Hessian.
"""

from __future__ import annotations

import math

import torch

from ._validation import check_finite, check_positive, check_shape
from .losses import pair_info_nce
from .optim import damped_newton
from .progress_bars import progress

__all__ = ["train_pair_info_nce_minibatch", "train_pair_info_nce_minibatch_batched",
           "minimize_pair_info_nce_rank_one"]


def _linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    r"""Learning rate :math:`\eta_t = \eta_0(1 - (t-1)/T)` at step :math:`t = 1,\dots,T` (``total_steps``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total_steps)


def train_pair_info_nce_minibatch(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    a0: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    generator: torch.Generator,
    optimizer: str = "adam",
    drop_last: bool = False,
    show_progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minibatch training of the linear map :math:`f(x) = A^\top x` with the pair InfoNCE loss.

    Each epoch draws a random permutation of the ``n`` training pairs (from ``generator``) and
    cuts it into minibatches :math:`B` of ``batch_size`` pairs (the last, smaller one is kept if
    it holds at least two pairs and ``drop_last`` is false, skipped otherwise). On each minibatch one step of Adam (or plain SGD) is taken on

    .. math::
        \mathcal L_B(A) = -\frac1{|B|}\sum_{i\in B}\log
          \frac{e^{x_i^\top AA^\top\hat x_i}}{\frac1{|B|-1}\sum_{j\in B,\,j\ne i}e^{x_i^\top AA^\top\hat x_j}}

    (:func:`clkit.pair_info_nce` on the batch: the in-batch, sample version of the population
    InfoNCE loss of Bansal, Kavis & Sanghavi 2024, InfoNCE slide). With gradient :math:`g_t` at
    step :math:`t = 1,\dots,T` the updates are SGD, :math:`A_t = A_{t-1} - \eta_t g_t`, or Adam
    (Kingma & Ba 2015, Algorithm 1, :math:`\beta_1 = 0.9`, :math:`\beta_2 = 0.999`,
    :math:`\epsilon = 10^{-8}`): :math:`m_t = \beta_1m_{t-1} + (1-\beta_1)g_t`,
    :math:`v_t = \beta_2v_{t-1} + (1-\beta_2)g_t^{2}`,
    :math:`A_t = A_{t-1} - \eta_t\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)` with
    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)` (entrywise):
    ``torch.optim.Adam`` (or ``torch.optim.SGD``) with ``torch.optim.lr_scheduler.LambdaLR``. The
    learning rate :math:`\eta_t = \eta_0(1 - (t-1)/T)` decays linearly from ``lr`` towards ``0``,
    so the iterates settle instead of fluctuating at a level set by the step size. Note that :math:`\mathbb E_B\mathcal L_B` is *not* the full-batch
    loss :math:`\mathcal L_{[n]}` (the log of an in-batch mean is biased by :math:`O(1/|B|)`), so
    the iterates approach the full-batch minimiser only up to that bias.

    Args:
        x, x_hat: ``(n, d)`` training pairs, ``n >= 2``.
        a0: ``(d, r)`` initial :math:`A` (its dtype and device are used throughout).
        batch_size: pairs per minibatch, an int in ``[2, n]``.
        epochs: passes over the data, a positive int.
        lr: initial learning rate, ``> 0``.
        generator: the only source of randomness (the permutations); on the device of ``x``.
        optimizer: ``"adam"`` or ``"sgd"``.
        drop_last: skip the incomplete last minibatch of each epoch, so every step sees exactly
            ``batch_size`` pairs.
        show_progress: passed (negated) to :func:`clkit.progress` as ``disable``; ``None`` lets
            tqdm decide.

    Returns:
        ``(a, trajectory)``: the final ``(d, r)`` matrix and the ``(epochs + 1, d, r)`` iterates at
        the start and after each epoch (detached).

    Raises:
        ValueError: naming the argument, for inconsistent shapes, non-finite inputs, a batch size
            outside ``[2, n]``, non-positive ``epochs`` or ``lr``, or an unknown ``optimizer``.
    """
    check_shape("x", x, (None, None))
    n, d = x.shape
    check_shape("x_hat", x_hat, (n, d))
    check_shape("a0", a0, (d, None))
    for name, t in (("x", x), ("x_hat", x_hat), ("a0", a0)):
        check_finite(name, t)
    if n < 2:
        raise ValueError(f"x must hold at least two pairs, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (2 <= batch_size <= n):
        raise ValueError(f"batch_size must be an int in [2, {n}], got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    lr = check_positive("lr", lr)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    x = x.to(dtype=a0.dtype, device=a0.device)
    x_hat = x_hat.to(dtype=a0.dtype, device=a0.device)
    a = a0.detach().clone().requires_grad_(True)
    # Kingma & Ba 2015, Algorithm 1 (torch.optim.Adam's defaults are the paper's betas and epsilon)
    opt = torch.optim.Adam([a], lr=lr) if optimizer == "adam" else torch.optim.SGD([a], lr=lr)
    starts = [s for s in range(0, n, batch_size) if n - s >= (batch_size if drop_last else 2)]
    schedule = _linear_decay(opt, epochs * len(starts))
    trajectory = [a.detach().clone()]
    disable = None if show_progress is None else not show_progress
    for _ in progress(range(epochs), desc="minibatch InfoNCE", disable=disable):
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        for s in starts:
            idx = order[s : s + batch_size]
            opt.zero_grad()
            pair_info_nce(x[idx] @ a, x_hat[idx] @ a).backward()
            opt.step()
            schedule.step()
        trajectory.append(a.detach().clone())
    a = a.detach()
    return a, torch.stack(trajectory)


def _batched_pair_info_nce_gradient(x: torch.Tensor, x_hat: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r"""Gradient in :math:`A` of :func:`clkit.pair_info_nce` (temperature 1) of ``(x_s @ a_s, x_hat_s @ a_s)`` for each of S batches, by hand: ``(S, d, r)``.

    With :math:`z_i = A^\top x_i`, :math:`\hat z_j = A^\top\hat x_j` and :math:`P` the softmax of
    row :math:`i` of :math:`z_i^\top\hat z_j` over :math:`j\ne i`, the loss
    :math:`\frac1B\sum_i[\log\sum_{j\ne i}e^{z_i^\top\hat z_j} - z_i^\top\hat z_i]` (up to a constant)
    has :math:`\partial/\partial Z = (P\hat Z - \hat Z)/B`, :math:`\partial/\partial\hat Z = (P^\top Z - Z)/B`,
    so the gradient is :math:`X^\top\partial_Z + \hat X^\top\partial_{\hat Z}`. (The tests compare the
    training it drives with the autograd-driven :func:`train_pair_info_nce_minibatch`.)
    """
    z, z_hat = x @ a, x_hat @ a
    n = z.shape[1]
    logits = z @ z_hat.transpose(1, 2)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    p = torch.softmax(logits.masked_fill(eye, -math.inf), dim=-1)
    d_z = (p @ z_hat - z_hat) / n
    d_z_hat = (p.transpose(1, 2) @ z - z) / n
    return x.transpose(1, 2) @ d_z + x_hat.transpose(1, 2) @ d_z_hat


def train_pair_info_nce_minibatch_batched(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    a0: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    generators: list[torch.Generator],
    drop_last: bool = False,
    show_progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`train_pair_info_nce_minibatch` (Adam) for S independent training sets at once.

    ``x, x_hat``: ``(S, n, d)``, ``a0``: ``(S, d, r)``, ``generators``: S generators, generator
    ``s`` drawing the epoch permutations of set ``s`` exactly as the unbatched function would. The
    S problems share nothing: each step is Adam on :math:`\sum_s\mathcal L_{B_s}(A_s)`, whose
    gradient in :math:`A_s` is that of :math:`\mathcal L_{B_s}(A_s)` alone (computed by hand,
    :func:`_batched_pair_info_nce_gradient`), and Adam acts entrywise, so every set follows the
    unbatched iterates (up to round-off) at the cost of one batched step.
    Returns ``(a, trajectory)`` of shapes ``(S, d, r)`` and ``(S, epochs + 1, d, r)``.

    Raises:
        ValueError: naming the argument, for inconsistent shapes, non-finite inputs, a batch size
            outside ``[2, n]``, non-positive ``epochs`` or ``lr``, or a wrong number of generators.

    Args:
        x, x_hat: ``(S, n, d)`` training pairs of S sets.
        a0: ``(S, d, r)`` initial maps.
        batch_size, epochs, lr, drop_last, show_progress: as in :func:`train_pair_info_nce_minibatch`.
        generators: S generators, one per set.
    """
    check_shape("x", x, (None, None, None))
    s_count, n, d = x.shape
    check_shape("x_hat", x_hat, (s_count, n, d))
    check_shape("a0", a0, (s_count, d, None))
    for name, t in (("x", x), ("x_hat", x_hat), ("a0", a0)):
        check_finite(name, t)
    if len(generators) != s_count:
        raise ValueError(f"generators must hold {s_count} generators, got {len(generators)}")
    if n < 2:
        raise ValueError(f"x must hold at least two pairs per set, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (2 <= batch_size <= n):
        raise ValueError(f"batch_size must be an int in [2, {n}], got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    lr = check_positive("lr", lr)
    x = x.to(dtype=a0.dtype, device=a0.device)
    x_hat = x_hat.to(dtype=a0.dtype, device=a0.device)
    a = a0.detach().clone()
    opt = torch.optim.Adam([a], lr=lr)  # Kingma & Ba 2015, Algorithm 1 (default betas, epsilon)
    starts = [s for s in range(0, n, batch_size) if n - s >= (batch_size if drop_last else 2)]
    schedule = _linear_decay(opt, epochs * len(starts))
    trajectory = [a.clone()]
    rows = torch.arange(s_count, device=x.device)[:, None]
    disable = None if show_progress is None else not show_progress
    for _ in progress(range(epochs), desc="minibatch InfoNCE (batched)", disable=disable):
        order = torch.stack([torch.randperm(n, generator=g, device=g.device) for g in generators]).to(x.device)
        for s in starts:
            idx = order[:, s : s + batch_size]
            # the gradient of each set's minibatch loss, by hand (no autograd graph per step)
            a.grad = _batched_pair_info_nce_gradient(x[rows, idx], x_hat[rows, idx], a)
            opt.step()
            schedule.step()
        trajectory.append(a.clone())
    return a, torch.stack(trajectory, dim=1)


def _rank_one_softmax(z: torch.Tensor, zh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row softmax over ``j != i`` of the rank-one logits ``z_i zh_j`` and its log-normaliser.

    ``z, zh``: ``(S, n)``. Returns ``(P, lse)`` with ``P`` ``(S, n, n)`` (zero diagonal) and
    ``lse_i = log sum_{j != i} exp(z_i zh_j)``. The row maximum over ``j != i`` is known without
    forming the logits (``z_i`` times the largest or smallest ``zh_j``, ``j != i``, from the top
    two and bottom two of ``zh``), so the matrix is formed once, shifted, by one ``baddbmm`` and
    exponentiated in place: five passes over ``n^2`` entries instead of about fifteen.
    """
    n = z.shape[-1]
    rows = torch.arange(n, device=z.device)
    top, bottom = zh.topk(2, dim=-1), zh.topk(2, dim=-1, largest=False)
    hi = torch.where(rows == top.indices[..., :1], top.values[..., 1:], top.values[..., :1])
    lo = torch.where(rows == bottom.indices[..., :1], bottom.values[..., 1:], bottom.values[..., :1])
    shift = torch.where(z >= 0, z * hi, z * lo)  # max_{j != i} z_i zh_j
    p = torch.baddbmm(-shift.unsqueeze(-1), z.unsqueeze(-1), zh.unsqueeze(-2)).exp_()
    p.diagonal(dim1=-2, dim2=-1).zero_()
    total = p.sum(-1)  # >= 1: the row maximum contributes exp(0)
    p.div_(total.unsqueeze(-1))
    return p, shift + total.log()


def _rank_one_pair_value(z: torch.Tensor, zh: torch.Tensor) -> torch.Tensor:
    """:func:`clkit.pair_info_nce` of the rank-one codes ``z, zh`` ``(S, n)`` of S sets: ``(S,)``."""
    _, lse = _rank_one_softmax(z, zh)
    return (lse - math.log(z.shape[-1] - 1) - z * zh).mean(-1)


def _rank_one_pair_derivatives(x: torch.Tensor, x_hat: torch.Tensor, a: torch.Tensor):
    """Value (S,), gradient (S, d) and Hessian (S, d, d) of the pair InfoNCE of f(x) = a^T x, a in R^d.

    With z = Xa, z^ = X^a, S_ij = z_i z^_j and P_ij the softmax of row i over j != i:
    grad = (X^T(P z^ - z^) + X^^T(P^T z - z))/n and, with u_ij = z_i x^_j + z^_j x_i,
    Hess = (1/n) sum_i [sum_j P_ij(x_i x^_j^T + x^_j x_i^T + u_ij u_ij^T) - u_i u_i^T
    - x_i x^_i^T - x^_i x_i^T], u_i = sum_j P_ij u_ij.
    Every sum over j is one product of P with a thin matrix: P [X^, z^ X^, z^, z^^2] and
    P^T [z, z^2] are the only passes over P (``cross`` = sum_ij P_ij (1 + z_i z^_j) x_i x^_j^T
    = X^T (P X^) + (zX)^T (P (z^X^))).
    """
    n, d = x.shape[1], x.shape[2]
    z = (x @ a.unsqueeze(-1)).squeeze(-1)
    zh = (x_hat @ a.unsqueeze(-1)).squeeze(-1)
    p, lse = _rank_one_softmax(z, zh)
    value = (lse - math.log(n - 1) - z * zh).mean(-1)
    right = p @ torch.cat([x_hat, x_hat * zh.unsqueeze(-1), zh.unsqueeze(-1), (zh * zh).unsqueeze(-1)], -1)
    p_xh, p_zxh, p_zh, p_zh2 = right[..., :d], right[..., d:2 * d], right[..., 2 * d], right[..., 2 * d + 1]
    left = p.transpose(1, 2) @ torch.stack([z, z * z], -1)
    pt_z, pt_z2 = left[..., 0], left[..., 1]
    xt = x.transpose(1, 2)
    xht = x_hat.transpose(1, 2)
    grad = ((xt @ (p_zh - zh).unsqueeze(-1)) + (xht @ (pt_z - z).unsqueeze(-1))).squeeze(-1) / n
    cross = xt @ p_xh + (xt * z.unsqueeze(1)) @ p_zxh
    t3 = (xht * pt_z2.unsqueeze(1)) @ x_hat + (xt * p_zh2.unsqueeze(1)) @ x
    u = z.unsqueeze(-1) * p_xh + p_zh.unsqueeze(-1) * x
    own = xt @ x_hat
    hess = (cross + cross.transpose(1, 2) + t3 - u.transpose(1, 2) @ u - own - own.transpose(1, 2)) / n
    return value, grad, 0.5 * (hess + hess.transpose(1, 2))


def minimize_pair_info_nce_rank_one(
    x: torch.Tensor, x_hat: torch.Tensor, a0: torch.Tensor, *, gtol: float = 1e-13, max_steps: int = 100
) -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""Full-batch minimiser of :func:`clkit.pair_info_nce` for :math:`f(x) = a^\top x`, :math:`a\in\mathbb R^d`, S sets at once.

    Saddle-free :func:`clkit.damped_newton` (absolute eigenvalues of the Hessian, so each step
    descends even near the saddle :math:`a = 0`; Armijo backtracking with :math:`c_1 = 1/4` per
    set) on the exact analytic gradient and Hessian of the rank-one pair InfoNCE: with
    :math:`z = Xa`, :math:`\hat z = \hat Xa` and :math:`P` the row softmax of
    :math:`z_i\hat z_j` over :math:`j\ne i`,
    :math:`\nabla = (X^\top(P\hat z-\hat z) + \hat X^\top(P^\top z - z))/n`. Near a minimiser full
    steps converge quadratically. Optimality is not assumed: check the gradient of the returned
    point independently.

    Args:
        x, x_hat: ``(S, n, d)`` pairs of S sets.
        a0: ``(S, d, 1)`` starting points.
        gtol: a set has converged once its largest gradient entry is below it.
        max_steps: at most this many Newton steps (the solver also stops after three steps in
            which the largest gradient entry over the sets did not decrease: round-off).

    Returns:
        ``(a, gradient, steps)``: ``a`` ``(S, d, 1)`` (per set the iterate of smallest gradient),
        its gradient ``(S, d)`` and the number of Newton steps.

    Raises:
        ValueError: naming the argument, for inconsistent shapes or ``a0`` with more than one column.
    """
    check_shape("x", x, (None, None, None))
    s_count, n, d = x.shape
    check_shape("x_hat", x_hat, (s_count, n, d))
    check_shape("a0", a0, (s_count, d, 1))
    check_positive("gtol", gtol)

    def value(a: torch.Tensor) -> torch.Tensor:
        return _rank_one_pair_value((x @ a.unsqueeze(-1)).squeeze(-1), (x_hat @ a.unsqueeze(-1)).squeeze(-1))

    result = damped_newton(lambda a: _rank_one_pair_derivatives(x, x_hat, a), a0[..., 0], grad_tol=gtol,
                           max_iter=max_steps, value=value, armijo=0.25, saddle_free=True,
                           norm_ord=math.inf, patience=3, strict=False)
    return result.x.unsqueeze(-1), result.grad, result.n_iter
