r"""Solvers for the population losses of :mod:`clkit.fisher`: Newton's method in :math:`M` and :math:`N`.

* :func:`minimize_info_nce_psd`: the convex population InfoNCE loss
  :func:`clkit.population_info_nce_m` over the PSD cone (interior point, then Newton on the face of
  the minimiser), with the KKT quantities :func:`psd_kkt_certificate` of a candidate;
* :func:`minimize_clip_n`: the convex population CLIP loss :func:`clkit.population_clip_loss_n`
  over :math:`N\in\mathbb R^{d_V\times d_T}` by :func:`clkit.damped_newton`.

Exact gradients and Hessians, by hand: the closed-form parts are linear and quadratic in the
matrix; the log-sum-exp term :func:`clkit.expected_log_sum_exp` differentiates by Price's theorem
(Gaussian expectations of the cumulants of a categorical distribution, on the same quadrature
nodes as the value). The tests compare them with autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import check_matrix, check_positive
from .fisher import (_check_delta, _info_nce_pieces, _phi_logits, _phi_value, _quadrature_points,
                     mixture_moments, population_clip_loss_n, small_delta_leading_term)
from .mixtures import GaussianMixture
from .optim import damped_newton

__all__ = ["PSDMinimiser", "minimize_info_nce_psd", "psd_kkt_certificate", "minimize_clip_n"]


def _log_sum_exp_cumulants(weights: torch.Tensor, t: torch.Tensor, node_weights: torch.Tensor):
    """Quadrature averages of the derivatives 1-4 of l(t) = log(w_1 + sum_{k>=2} w_k e^{t_k}).

    ``t``: (J, P, K-1) nodes of J Gaussians, ``node_weights``: (P,). l is the cumulant-generating
    function of the one-hot vector X (categories 2..K) under p = softmax(log w + (0, t)), so its
    n-th derivative at a node is the n-th cumulant of X under p there. Returns the node averages
    (J, K-1), (J, K-1, K-1), (J, K-1, K-1, K-1), (J, K-1, K-1, K-1, K-1). Batched products only.
    """
    return _cumulants_from_probabilities(torch.softmax(_phi_logits(weights, t), dim=-1), node_weights)


def _cumulants_from_probabilities(p_all: torch.Tensor, node_weights: torch.Tensor):
    """:func:`_log_sum_exp_cumulants` from the categorical probabilities ``p_all`` (J, P, K) at the nodes."""
    j, n_nodes, k = p_all.shape
    k1 = k - 1
    p = p_all[..., 1:]
    onehot = torch.cat([torch.zeros(1, k1, dtype=p.dtype, device=p.device),
                        torch.eye(k1, dtype=p.dtype, device=p.device)])  # (K, K-1)
    y = onehot - p.unsqueeze(-2)  # (J, P, K, K-1): X - p for each category
    yy = (y.unsqueeze(-1) * y.unsqueeze(-2)).reshape(j, n_nodes, k, k1 * k1)
    wp = (node_weights[:, None] * p_all).reshape(j, n_nodes * k, 1)  # quadrature x category weights
    y_flat = y.reshape(j, n_nodes * k, k1)
    yy_flat = yy.reshape(j, n_nodes * k, k1 * k1)
    e1 = node_weights @ p  # (J, K-1)
    c2 = (p_all.unsqueeze(-2) @ yy).squeeze(-2)  # per-node covariance, flattened (J, P, (K-1)^2)
    e2 = node_weights @ c2
    wyy = (wp * yy_flat).transpose(1, 2)
    e3 = wyy @ y_flat  # (J, (K-1)^2, K-1)
    m4 = wyy @ yy_flat  # (J, (K-1)^2, (K-1)^2)
    c2c2 = (node_weights[None, :, None] * c2).transpose(1, 2) @ c2  # E[c2 (x) c2], pairing (ab)(de)
    c2c2 = c2c2.reshape(j, k1, k1, k1, k1)
    e4 = m4.reshape(j, k1, k1, k1, k1) - c2c2 - c2c2.permute(0, 1, 3, 2, 4) - c2c2.permute(0, 1, 3, 4, 2)
    return e1, e2.reshape(j, k1, k1), e3.reshape(j, k1, k1, k1), e4


def _phi_cumulants(weights, g, h, n_quadrature):
    """Node averages of the cumulants 1-4 of expected_log_sum_exp's integrand, per component (K > 1).

    The same nodes as :func:`expected_log_sum_exp` (:func:`_quadrature_points`). Returns
    ``(e1, e2, e3, e4)`` as in :func:`_log_sum_exp_cumulants`.
    """
    return _log_sum_exp_cumulants(weights, *_quadrature_points(g, h, n_quadrature))


def _phi_directional(weights, g, h, n_quadrature, dg, dh, d2h, cumulants=None):
    """Gradient pairing and Hessian Gram matrix of expected_log_sum_exp along directions.

    ``dg``, ``dh``: (q, K, K) first derivatives of G and H along q directions; ``d2h``: a function
    (i, j) -> second derivative of H, given as the (q, q, K, K) tensor. Gaussian expectations of
    l(c + L xi) differentiate by Price's theorem: d/dc -> E l', d/dS -> E l''/2, and so on.
    ``cumulants``: :func:`_phi_cumulants` at (g, h), if already computed.
    """
    e1, e2, e3, e4 = _phi_cumulants(weights, g, h, n_quadrature) if cumulants is None else cumulants
    dc = (dg[:, 1:, :] - dg[:, :1, :]).transpose(1, 2)  # (q, K(j), K-1)

    def to_s(x):  # K x K symmetric perturbation of H -> (K-1) x (K-1) perturbation of S
        x = 0.5 * (x + x.transpose(-1, -2))
        return x[..., 1:, 1:] - x[..., 1:, :1] - x[..., :1, 1:] + x[..., :1, :1]

    ds = to_s(dh)  # (q, K-1, K-1)
    grad = (weights @ dg[:, 0, :].T) + torch.einsum("j,qja,ja->q", weights, dc, e1)
    e2_bar = torch.einsum("j,jab->ab", weights, e2)
    grad = grad + 0.5 * torch.einsum("qab,ab->q", ds, e2_bar)
    hess = torch.einsum("j,pja,jab,qjb->pq", weights, dc, e2, dc)
    cross = 0.5 * torch.einsum("j,pja,jabd,qbd->pq", weights, dc, e3, ds)
    hess = hess + cross + cross.T
    hess = hess + 0.25 * torch.einsum("pab,abde,qde->pq", ds, torch.einsum("j,jabde->abde", weights, e4), ds)
    hess = hess + 0.5 * torch.einsum("pqab,ab->pq", to_s(d2h), e2_bar)
    return grad, hess


def _symmetric_basis(d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Orthonormal basis (p, d, d) of symmetric d x d matrices, p = d(d+1)/2."""
    rows, cols = torch.triu_indices(d, d, device=device)
    basis = torch.zeros(rows.numel(), d, d, dtype=dtype, device=device)
    idx = torch.arange(rows.numel(), device=device)
    scale = torch.where(rows == cols, 1.0, 1.0 / math.sqrt(2.0)).to(dtype)
    basis[idx, rows, cols] = scale
    basis[idx, cols, rows] = scale
    return basis


def _info_nce_derivatives(m: torch.Tensor, mixture: GaussianMixture, delta: float, n_quadrature: int,
                          directions: torch.Tensor | None, mom: dict | None = None):
    """Value, gradient Z (d, d) and, for symmetric ``directions`` (q, d, d), the Hessian Gram matrix (q, q).

    Analytic: the smooth part is linear plus quadratic in M; G = mu M mu^T is linear and
    H = mu M Sigma M mu^T quadratic in M, and the derivatives of expected_log_sum_exp in (G, H)
    are Gaussian expectations of the cumulants of a categorical distribution (Price's theorem).
    The gradient, by hand (the tests compare it with autograd): with the attraction matrix
    B = delta sum_k w_k mu_k mu_k^T + (1 - delta) mu_bar mu_bar^T,

        Z = -B + (Sigma M S2 + S2 M Sigma)/2 + mu^T Gamma_G mu + Q M Sigma + Sigma M Q,

    Gamma_G = d phi/dG (row 0: w_j (1 - sum_a E l'_a), rows a+1: w_j E l'_a, per column j),
    Q = mu^T D^T (sum_j w_j E l''_j / 2) D mu with D = [-1, I] (d phi/dH through DHD^T).

    The Hessian along E_p, E_q, with nu = D mu (rows mu_k - mu_1, k >= 2): the quadratic parts
    give tr(E_p Sigma E_q (S2 + 2Q)), symmetrised (2Q from the second derivative of H); phi's
    cumulants pair the first derivatives of the mean and covariance of its Gaussian,
    c_q = mu E_q nu^T (row j: component j) and s_q = nu E_q Sigma M nu^T + its transpose:
    sum_j w_j [c_p E2_j c_q + (c_p E3_j s_q + c_q E3_j s_p) / 2] + s_p (sum_j w_j E4_j) s_q / 4,
    with En_j the node average of the n-th cumulant. One node set serves the value and all
    cumulants; every contraction is a product of flattened matrices.
    """
    mom = mixture_moments(mixture) if mom is None else mom
    sigma, s2, mu, w = mom["sigma"], mom["s2"], mixture.means, mixture.weights
    k = mixture.n_components
    m = m.detach()
    smooth, g, h = _info_nce_pieces(m, mixture, delta, mom)
    mean = mom["mean"]
    sms = sigma @ m @ s2
    z = -(delta * (mu.T * w) @ mu + (1 - delta) * torch.outer(mean, mean)) + 0.5 * (sms + sms.T)
    gamma_g = torch.zeros(k, k, dtype=m.dtype, device=m.device)
    gamma_g[0] = w
    q_mat = None
    if k > 1:
        t, node_weights = _quadrature_points(g, h, n_quadrature)
        logits = _phi_logits(w, t)
        lse = torch.logsumexp(logits, dim=-1)
        value = smooth + w @ g[0] + w @ (lse @ node_weights)
        e1, e2, e3, e4 = _cumulants_from_probabilities(torch.exp(logits - lse.unsqueeze(-1)), node_weights)
        gamma_g[0] = w * (1 - e1.sum(-1))
        gamma_g[1:] = (w.unsqueeze(-1) * e1).T
        nu = mu[1:] - mu[:1]  # D mu
        e2_bar = (w @ e2.reshape(k, -1)).reshape(k - 1, k - 1)
        q_mat = 0.5 * (nu.T @ e2_bar @ nu)
        qms = q_mat @ m @ sigma
        z = z + qms + qms.T
    else:
        value = smooth + w @ g[0]
    z = z + mu.T @ gamma_g @ mu
    z = 0.5 * (z + z.T)
    if directions is None:
        return float(value), z, None
    e = directions
    n_dirs, d = e.shape[0], e.shape[1]
    # tr(E_p Sigma E_q S), S = S2 (+ 2Q): entries of E_p Sigma against those of (E_q S)^T
    outer = s2 if q_mat is None else s2 + 2 * q_mat
    quad = (e @ sigma).reshape(n_dirs, d * d) @ (e @ outer).transpose(1, 2).reshape(n_dirs, d * d).T
    hess = 0.5 * (quad + quad.T)
    if k > 1:
        k1 = k - 1
        dc = (mu @ e @ nu.T).reshape(n_dirs, k * k1)  # c_q, flattened (component j, a)
        x = (nu @ e) @ (sigma @ m @ nu.T)  # (q, K-1, K-1)
        ds = (x + x.transpose(1, 2)).reshape(n_dirs, k1 * k1)  # s_q, flattened
        hess = hess + dc @ torch.block_diag(*(w[:, None, None] * e2)) @ dc.T
        cross = 0.5 * (dc @ (w[:, None, None] * e3.reshape(k, k1, k1 * k1)).reshape(k * k1, k1 * k1)) @ ds.T
        hess = hess + cross + cross.T
        e4_bar = (w @ e4.reshape(k, -1)).reshape(k1 * k1, k1 * k1)
        hess = hess + 0.25 * (ds @ e4_bar @ ds.T)
    return float(value), z, 0.5 * (hess + hess.T)


@dataclass(frozen=True)
class PSDMinimiser:
    r"""Result of :func:`minimize_info_nce_psd`: the minimiser :math:`M^* = A^*A^{*\top}` and its certificate.

    ``a`` is the ``(d, rank)`` factor (``a @ a.T`` is :math:`M^*`); ``value`` the loss there;
    ``gradient`` the symmetric gradient :math:`Z = \nabla\mathcal L(M^*)`; ``barrier_eigenvalues``
    the eigenvalues of the last interior-point iterate (descending) from which the rank was read;
    ``newton_history`` the largest gradient entry of the factor after each face-Newton step.
    """

    a: torch.Tensor
    value: float
    gradient: torch.Tensor
    rank: int
    barrier_eigenvalues: torch.Tensor
    interior_newton_steps: int
    newton_history: tuple[float, ...]

    @property
    def m(self) -> torch.Tensor:
        return self.a @ self.a.T


def _face_newton(loss_and_derivs, value_of, a0: torch.Tensor, max_steps: int, gtol: float, rcond: float):
    """Newton on the factor A (d, m) of a fixed-rank M = A A^T, pseudo-inverse for the O(m) gauge.

    Saddle-free (|eigenvalues| of the Hessian) with a backtracking line search on the loss, so every
    accepted step is a descent step; near the minimiser full steps are taken (quadratic convergence).
    Stops below ``gtol`` or after three steps without progress, where progress within ``1000 gtol``
    of zero (the round-off floor) means halving the best gradient so far.
    """
    d, m = a0.shape
    a = a0.clone()
    eye_m = torch.eye(m, dtype=a.dtype, device=a.device)
    units = torch.eye(d * m, dtype=a.dtype, device=a.device).reshape(d * m, d, m)
    history: list[float] = []
    best = None
    progress_score, progress_step = math.inf, 0
    for _ in range(max_steps + 1):
        dirs = units @ a.T  # dA_i A^T, (dm, d, d)
        dirs = dirs + dirs.transpose(1, 2)
        value, z, hess_m = loss_and_derivs(a @ a.T, dirs)
        grad = (2 * z @ a).reshape(-1)
        score = float(grad.abs().max())
        if best is None or score < best[0]:
            best = (score, a.clone(), value, z)
        history.append(score)
        if score < gtol or len(history) > max_steps:
            break
        # progress: any decrease, but within 1000 gtol of 0 (round-off) only a halving counts
        if score < (0.5 if progress_score < 1e3 * gtol else 1.0) * progress_score:
            progress_score, progress_step = score, len(history) - 1
        if len(history) - 1 - progress_step >= 3:  # three steps without progress: round-off
            break
        hess = hess_m + 2 * torch.kron(z, eye_m)
        evals, evecs = torch.linalg.eigh(0.5 * (hess + hess.T))
        # |eigenvalues| (saddle-free Newton): a descent direction even near a saddle of the
        # factorised problem (a column at zero along a direction of negative curvature).
        keep = evals.abs() > rcond * evals.abs().max()
        step = (evecs[:, keep] @ ((evecs[:, keep].T @ grad) / evals[keep].abs())).reshape(d, m)
        s, slack = 1.0, 64 * torch.finfo(a.dtype).eps * max(1.0, abs(value))
        while s > 1e-6 and not value_of(a - s * step) <= value + slack:
            s *= 0.5
        a = a - s * step
    return best, history


def minimize_info_nce_psd(
    mixture: GaussianMixture,
    delta: float,
    n_quadrature: int = 40,
    *,
    barriers: tuple[float, ...] = (1e-2, 1e-4, 1e-6, 1e-8),
    rank_ratio: float = 3.0,
    newton_steps: int = 12,
    gtol: float = 1e-15,
    rcond: float = 1e-11,
    escape_tol: float = 1e-10,
) -> PSDMinimiser:
    r"""Minimise the convex :func:`population_info_nce_m` over the PSD cone, then factor the minimiser.

    1. *Interior point.* Damped Newton (backtracking line search that keeps :math:`M\succ0`) on
       :math:`\mathcal L(M) - t\log\det M` over symmetric :math:`M`, for each barrier weight
       :math:`t` in ``barriers`` (decreasing), warm-started by a predictor step along the tangent
       :math:`dM/dt` of the central path (kept when positive definite and better for the new
       weight). Exact Hessians: analytic for the
       closed-form parts; the log-sum-exp term differentiates by Price's theorem (Gaussian
       expectations of the cumulants of a categorical distribution), so no autograd Hessian is
       needed. At the barrier's minimiser an eigenvalue of :math:`M` in a direction the optimum
       uses stays of order one as :math:`t\to0`, one in a direction where the loss rises to first
       order is of order :math:`t`, and one where it rises only to second order is of order
       :math:`\sqrt t`. The rank of :math:`M^*` is read off as the number of eigenvalues that
       shrink by less than ``rank_ratio`` between the last two barrier weights.
    2. *Newton on the face.* With that rank :math:`m`, Newton on the factor :math:`A\in\mathbb R^{d\times m}`
       of :math:`M = AA^\top` (the face of the cone through :math:`M^*`, locally non-degenerate up
       to the rotations :math:`A\mapsto AQ`, dropped by a pseudo-inverse with ``rcond``) converges
       quadratically to round-off (largest gradient entry below ``gtol``, or no progress for three
       steps). The iterate with the smallest gradient is returned.

    Optimality is *not* assumed: check it with :func:`psd_kkt_certificate`.

    Raises:
        ValueError: for ``delta`` outside ``[0, 1]``, barriers that are not positive and
            decreasing (at least two), or non-positive tolerances.

    Args:
        mixture: shared-covariance :class:`clkit.GaussianMixture`.
        delta: bias :math:`\delta\in[0,1]`.
        n_quadrature: Gauss–Hermite points per dimension.
        barriers: barrier weights relative to the loss scale :math:`\delta^2|\operatorname{tr}(M_1B_c)|`.
        rank_ratio: an eigenvalue that shrinks by less than this between the last two weights counts.
        newton_steps: face-Newton steps per round.
        gtol: face-Newton target for the largest gradient entry.
        rcond: relative pseudo-inverse cut for the gauge directions.
        escape_tol: a round of face Newton is repeated with one more column while
            :math:`\lambda_{\min}(Z) < -` ``escape_tol`` :math:`\cdot\operatorname{tr}\sum_kw_k\mu_k\mu_k^\top`.

    Returns:
        A :class:`PSDMinimiser`.
    """
    delta = _check_delta(delta)
    if len(barriers) < 2 or any(b <= 0 for b in barriers) or any(b1 <= b2 for b1, b2 in zip(barriers, barriers[1:])):
        raise ValueError(f"barriers must be at least two positive, decreasing weights, got {barriers!r}")
    for name, value in (("gtol", gtol), ("rcond", rcond)):
        check_positive(name, value)
    if not rank_ratio > 1:
        raise ValueError(f"rank_ratio must be > 1, got {rank_ratio}")
    d, dtype, device = mixture.dim, mixture.dtype, mixture.device
    basis = _symmetric_basis(d, dtype, device)

    moments = mixture_moments(mixture)  # once per solve: every evaluation below reuses them

    def derivs(m_mat: torch.Tensor, dirs: torch.Tensor | None):
        return _info_nce_derivatives(m_mat, mixture, delta, n_quadrature, dirs, moments)

    def value_only(m_mat: torch.Tensor) -> float:
        smooth, g, h = _info_nce_pieces(m_mat, mixture, delta, moments)
        return float(smooth + _phi_value(mixture.weights, g, h, n_quadrature))

    def barrier_value(m_mat: torch.Tensor, t: float) -> float:
        chol, info = torch.linalg.cholesky_ex(m_mat)
        if int(info) != 0:
            return math.inf
        return value_only(m_mat) - 2 * t * float(torch.log(torch.diagonal(chol)).sum())

    # Natural scales from the small-delta term M_1 (M* ~ delta M_1, L(M*) ~ -delta^2 tr(M_1 B_c) / 2):
    # the start is of the size of M*, the barrier weights are relative to the size of the loss.
    m1 = small_delta_leading_term(mixture)
    mom = mixture_moments(mixture)
    size = max(delta, 1e-3)
    loss_scale = size**2 * abs(float(torch.trace(m1 @ mom["b_c"])))
    m = (size * abs(float(torch.trace(m1))) / d) * torch.eye(d, dtype=dtype, device=device)
    steps = 0
    spectra = []
    basis_flat = basis.reshape(basis.shape[0], d * d)
    tangent = None  # (t, dM/dt) on the central path at the previous barrier weight
    for t in (b * loss_scale for b in barriers):
        if tangent is not None:
            # predictor: follow the tangent of the central path to the new weight (an eigenvalue of
            # order t lands on its new size), kept only if positive definite and better for the
            # new barrier objective; Newton (the corrector) then starts there
            candidate = m + (t - tangent[0]) * tangent[1]
            if int(torch.linalg.cholesky_ex(candidate)[1]) == 0 and barrier_value(candidate, t) < barrier_value(m, t):
                m = 0.5 * (candidate + candidate.T)
        for _ in range(40):
            value, z, hess = derivs(m, basis)
            chol = torch.linalg.cholesky(m)
            m_inv = torch.cholesky_inverse(chol)
            grad = basis_flat @ (z - t * m_inv).reshape(-1)
            # tr(M^-1 E_p M^-1 E_q): the Hessian of -log det M
            inv_e = (m_inv @ basis).reshape(basis.shape[0], d * d)
            inv_e_t = (m_inv @ basis).transpose(1, 2).reshape(basis.shape[0], d * d)
            hess = hess + t * (inv_e @ inv_e_t.T)
            # at the centre grad L(M) = t M^-1, so (Hess L + t Hess(-log det)) dM/dt = M^-1
            tangent = (t, (torch.linalg.solve(hess, basis_flat @ m_inv.reshape(-1)) @ basis_flat).reshape(d, d))
            step = -torch.linalg.solve(hess, grad)
            decrement = float(-(grad @ step))
            if decrement < 1e-20 * max(1.0, abs(value)):
                break
            direction = (step @ basis_flat).reshape(d, d)
            # the barrier objective at m (= barrier_value(m, t), without evaluating the loss again)
            f0, s = value - 2 * t * float(torch.log(torch.diagonal(chol)).sum()), 1.0
            # Armijo up to the round-off of the loss (as in the face Newton below): once the
            # decrement is at round-off, the full Newton step is taken and the stage ends, instead
            # of halving the step until the test passes on noise
            slack = 64 * torch.finfo(dtype).eps * max(1.0, abs(f0))
            while s > 1e-12 and not barrier_value(m + s * direction, t) <= f0 - 0.25 * s * decrement + slack:
                s *= 0.5
            if s <= 1e-12:  # no acceptable step: solved to round-off
                break
            m = m + s * direction
            m = 0.5 * (m + m.T)
            steps += 1
            if s == 1.0 and decrement < 1e-10 * max(1.0, abs(value)):  # quadratic phase: one more step suffices
                break
        spectra.append(torch.linalg.eigh(m))
    (evals_prev, _), (evals, evecs) = spectra[-2], spectra[-1]
    evals, evecs, evals_prev = evals.flip(0), evecs.flip(1), evals_prev.flip(0)
    rank = int((evals_prev / evals < rank_ratio).sum())
    a = evecs[:, :rank] * evals[:rank].sqrt()
    history: list[float] = []
    scale = float(mixture.weights @ mixture.means.pow(2).sum(1))  # tr(sum_k w_k mu_k mu_k^T) >= |grad L(0)|
    while True:
        (score, a, value, z), part = _face_newton(derivs, lambda a_: value_only(a_ @ a_.T), a, newton_steps,
                                                  gtol, rcond)
        history.extend(part)
        lam, vecs = torch.linalg.eigh(z)
        if float(lam[0]) >= -escape_tol * scale or a.shape[1] >= d:
            break
        # Z has a negative eigenvalue: the rank read from the barrier path was too small (a used
        # eigenvalue below the barrier's resolution). Add that direction at its 1-D Newton size.
        v = vecs[:, :1]
        _, _, curvature = derivs(a @ a.T, (v @ v.T).unsqueeze(0))
        size = -float(lam[0]) / float(curvature[0, 0])
        a = torch.cat([a, math.sqrt(size) * v], dim=1)
    return PSDMinimiser(a, value, z, a.shape[1], evals, steps, tuple(history))


def psd_kkt_certificate(gradient: torch.Tensor, a: torch.Tensor,
                        subspace: torch.Tensor | None = None) -> dict[str, float]:
    r"""KKT quantities of a candidate minimiser :math:`M = AA^\top` of a convex function on the PSD cone.

    With :math:`Z = \nabla\mathcal L(M)` (symmetric), :math:`M` is optimal iff :math:`Z\succeq0` and
    :math:`ZM = 0`; for a convex :math:`\mathcal L` and any :math:`M'\succeq0`,
    :math:`\mathcal L(M')\ge\mathcal L(M) + \lambda_{\min}(Z)\operatorname{tr}M' - \langle Z, M\rangle`.
    Returns ``min_eig`` (:math:`\lambda_{\min}(Z)`), ``complementarity``
    (:math:`\|ZM\|_F/\|M\|_F`), ``inner`` (:math:`|\langle Z, M\rangle|`) and ``slack``, the smallest
    eigenvalue of :math:`Z` on :math:`\mathrm{Col}(M)^\perp` (positive: strict complementarity),
    or, with ``subspace`` :math:`S\supseteq\mathrm{Col}(M)`, on :math:`S\ominus\mathrm{Col}(M)`:
    the strict-complementarity slack of the problem reduced to :math:`M = QNQ^\top`, :math:`Q` an
    orthonormal basis of :math:`S` (its gradient is :math:`Q^\top ZQ`). For the population InfoNCE
    loss with :math:`S = S_F` this is the slack that matters: :math:`Z` vanishes on
    :math:`\{e:\mu_k^\top e = 0\ \forall k\}` (the book's chapter 3), so the unrestricted ``slack`` is 0
    whenever :math:`d>\dim S_F`.

    Args:
        gradient: ``(d, d)`` gradient :math:`\nabla\mathcal L(M)` (its symmetric part is used).
        a: ``(d, m)`` factor of :math:`M`, full column rank.
        subspace: optional ``(d, p)`` matrix whose columns span :math:`S` (need not be orthonormal).

    Raises:
        ValueError: if ``gradient``, ``a`` or ``subspace`` is not a matrix, or ``subspace`` has a
            different number of rows.
    """
    check_matrix("gradient", gradient)
    check_matrix("a", a)
    z = 0.5 * (gradient + gradient.T)
    m = a @ a.T
    q, _ = torch.linalg.qr(a, mode="complete")
    rest = q[:, a.shape[1]:]
    if subspace is not None:
        check_matrix("subspace", subspace)
        if subspace.shape[0] != a.shape[0]:
            raise ValueError(f"subspace must have {a.shape[0]} rows, got {subspace.shape[0]}")
        # the part of S orthogonal to Col(a): left singular vectors of (I - P_a) basis(S)
        u_s, s_s, _ = torch.linalg.svd(subspace, full_matrices=False)
        basis = u_s[:, s_s > s_s[0] * max(subspace.shape) * torch.finfo(s_s.dtype).eps]
        resid = rest @ (rest.T @ basis)
        u_r, s_r, _ = torch.linalg.svd(resid, full_matrices=False)
        rest = u_r[:, s_r > 1e-6] if s_r.numel() else u_r
    slack = float(torch.linalg.eigvalsh(rest.T @ z @ rest)[0]) if rest.shape[1] else math.inf
    return {
        "min_eig": float(torch.linalg.eigvalsh(z)[0]),
        "complementarity": float((z @ m).norm() / m.norm()),
        "inner": float((z * m).sum().abs()),
        "slack": slack,
    }


def _clip_derivatives(n: torch.Tensor, mixture_v: GaussianMixture, mixture_t: GaussianMixture, n_quadrature: int):
    """Value, gradient (d_V, d_T) and Hessian (d_V d_T, d_V d_T) of :func:`population_clip_loss_n`, by hand.

    Along the unit directions E_q = e_a e_b^T (q = a d_T + b, the order of ``n.reshape(-1)``):
    the quadratic parts 1/2 tr(N S_T N^T S2_V) and 1/2 tr(N^T S_V N S2_T) have gradients
    S2_V N S_T and S_V N S2_T and constant Hessians; each log-partition term is
    expected_log_sum_exp of (G, H) with G linear and H quadratic in N (v -> t: G = mu_T N^T mu_V^T,
    H = mu_T N^T S_V N mu_T^T; t -> v with N^T and the roles swapped), differentiated by Price's
    theorem as in :func:`_phi_directional`. The tests compare it with autograd.
    """
    w = mixture_v.weights
    k = w.shape[0]
    mom_v, mom_t = mixture_moments(mixture_v), mixture_moments(mixture_t)
    mu_v, mu_t = mixture_v.means, mixture_t.means
    dv, dt = n.shape
    q = dv * dt
    units = torch.eye(q, dtype=n.dtype, device=n.device).reshape(q, dv, dt)
    value = float(population_clip_loss_n(n, mixture_v, mixture_t, n_quadrature))
    grad = -2 * (mu_v.T * w) @ mu_t
    hess = torch.zeros(q, q, dtype=n.dtype, device=n.device)
    for mat, sig_in, s2_in, sig_out, s2_out, mu_in, mu_out in (
        (n, mom_t["sigma"], mom_t["s2"], mom_v["sigma"], mom_v["s2"], mu_t, mu_v),  # v -> t
        (n.T, mom_v["sigma"], mom_v["s2"], mom_t["sigma"], mom_t["s2"], mu_v, mu_t),  # t -> v
    ):
        # this direction's variable X (N or N^T) and its unit directions
        e = units if mat is n else units.transpose(1, 2)
        # 1/2 tr(X sig_in X^T s2_out): gradient s2_out X sig_in, Hessian tr(E_p sig_in E_q^T s2_out)
        g_quad = s2_out @ mat @ sig_in
        grad = grad + (g_quad if mat is n else g_quad.T)
        quad = torch.einsum("pab,bc,qdc,da->pq", e, sig_in, e, s2_out)
        hess = hess + 0.5 * (quad + quad.T)
        # phi(G, H), G = mu_in X^T mu_out^T, H = mu_in X^T sig_out X mu_in^T
        g = mu_in @ mat.T @ mu_out.T
        h = mu_in @ mat.T @ sig_out @ mat @ mu_in.T
        dg = torch.einsum("ka,qba,jb->qkj", mu_in, e, mu_out)
        x = e.transpose(1, 2) @ sig_out @ mat  # E^T sig_out X
        dh = mu_in @ (x + x.transpose(1, 2)) @ mu_in.T
        if k == 1:
            grad = grad + (dg[:, 0, :] @ w).reshape(dv, dt)
            continue
        y = torch.einsum("pba,bc,qcd->pqad", e, sig_out, e)  # E_p^T sig_out E_q
        d2h = torch.einsum("ka,pqab,jb->pqkj", mu_in, y + y.transpose(0, 1), mu_in)
        g_phi, h_phi = _phi_directional(w, g, h, n_quadrature, dg, dh, d2h)
        grad = grad + g_phi.reshape(dv, dt)
        hess = hess + h_phi
    return value, grad, 0.5 * (hess + hess.T)


def minimize_clip_n(
    mixture_v: GaussianMixture,
    mixture_t: GaussianMixture,
    n_quadrature: int = 40,
    *,
    max_steps: int = 60,
    gtol: float = 1e-14,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    r"""Minimise the convex :func:`clkit.population_clip_loss_n` over :math:`N\in\mathbb R^{d_V\times d_T}`.

    Unconstrained and strictly convex: :func:`clkit.damped_newton` (Newton direction, Armijo
    backtracking with :math:`c_1 = 1/4`) converges quadratically from the start
    :math:`N_0 = 0.1\,C/\|C\|_F`, :math:`C = \sum_kw_k\mu_{V,k}\mu_{T,k}^\top` (at :math:`N = 0`
    the covariance of the log-sum-exp arguments vanishes and its Cholesky factor is not
    differentiable). Exact gradient and Hessian by hand (Price's theorem, ``_clip_derivatives``).

    Args:
        mixture_v, mixture_t: paired shared-covariance mixtures (same weights).
        n_quadrature: Gauss–Hermite points per dimension.
        max_steps: at most this many Newton steps.
        gtol: stop once the largest gradient entry is below it (or after three steps without a
            smaller one: round-off).

    Returns:
        ``(n, gradient, history)``: the iterate with the smallest largest gradient entry, its
        gradient ``(d_V, d_T)``, and the largest gradient entry before each step and at the end.

    Raises:
        ValueError: for a non-positive ``gtol`` or mixtures with different weights.
    """
    check_positive("gtol", gtol)
    if mixture_v.n_components != mixture_t.n_components or not torch.allclose(mixture_v.weights, mixture_t.weights):
        raise ValueError("mixture_t must have the same weights as mixture_v (paired components)")
    dv, dt = mixture_v.dim, mixture_t.dim

    def value(flat: torch.Tensor) -> torch.Tensor:
        return population_clip_loss_n(flat.reshape(dv, dt), mixture_v, mixture_t, n_quadrature)

    def value_grad_hess(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, g, h = _clip_derivatives(flat.reshape(dv, dt), mixture_v, mixture_t, n_quadrature)
        return torch.as_tensor(f, dtype=flat.dtype, device=flat.device), g.reshape(-1), h

    start = torch.einsum("k,ki,kj->ij", mixture_v.weights, mixture_v.means, mixture_t.means)
    result = damped_newton(value_grad_hess, (0.1 * start / start.norm()).reshape(-1), grad_tol=gtol,
                           max_iter=max_steps, value=value, armijo=0.25, max_backtracks=34,
                           norm_ord=math.inf, patience=3, strict=False)
    return result.x.reshape(dv, dt), result.grad.reshape(dv, dt), list(result.history)
