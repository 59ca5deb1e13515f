"""scikit-learn's handwritten digits as a real data set for the book's theorems.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 grey-level images (values 0..16) of the ten
digits with scikit-learn, so the book stays offline. This module loads them, makes one fixed,
seeded, stratified train/test split, standardises pixels with the training statistics, applies
batched image augmentations (shifts, small rotations, cut-out, additive Gaussian noise) seeded
through a :class:`torch.Generator`, and fits the shared-covariance Gaussian mixture of Bansal et
al. (2024) to labelled features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import check_nonnegative, check_positive
from .device import DEFAULT_DTYPE, default_device
from .mixtures import GaussianMixture

__all__ = [
    "DIGITS_SIDE",
    "DIGITS_MAX_VALUE",
    "DigitsSplit",
    "load_digits_images",
    "digits_split",
    "augment_digits",
    "fit_shared_covariance_mixture",
    "sample_class_partners",
    "augmentation_variance",
    "rotate_digits",
]

DIGITS_SIDE = 8  # images are DIGITS_SIDE x DIGITS_SIDE
DIGITS_MAX_VALUE = 16.0  # grey levels run from 0 (background) to 16


def load_digits_images(
    *, dtype: torch.dtype = DEFAULT_DTYPE, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images of ``sklearn.datasets.load_digits`` as tensors.

    Returns ``(images, labels)``: images of shape ``(1797, 8, 8)`` with grey levels in
    ``[0, 16]`` in ``dtype`` on ``device`` (clkit's default device when ``None``), and ``int64``
    labels in ``0..9``.

    Raises:
        ValueError: if ``dtype`` is not a floating-point dtype.
    """
    from sklearn.datasets import load_digits

    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    device = default_device() if device is None else torch.device(device)
    data = load_digits()
    images = torch.as_tensor(data.images, dtype=dtype, device=device)
    labels = torch.as_tensor(data.target, dtype=torch.int64, device=device)
    return images, labels


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed train/test split of the digits, standardised with the training statistics.

    ``x_train``/``x_test`` are ``(n, 64)`` standardised pixels :math:`(x - m)/s` (``m`` the
    training mean, ``s`` the training standard deviation, 1 where a pixel is constant);
    ``images_train``/``images_test`` the raw ``(n, 8, 8)`` images (for augmentation, which acts on
    raw images; :meth:`standardize` maps them to the same coordinates).
    """

    images_train: torch.Tensor
    images_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def standardize(self, images: torch.Tensor) -> torch.Tensor:
        """Flatten ``(n, 8, 8)`` raw images and standardise: :math:`(x - m)/s`, shape ``(n, 64)``.

        Raises:
            ValueError: if ``images`` is not of shape ``(n, 8, 8)``.
        """
        if images.ndim != 3 or tuple(images.shape[1:]) != (DIGITS_SIDE, DIGITS_SIDE):
            raise ValueError(f"images must have shape (n, 8, 8), got {tuple(images.shape)}")
        return (images.reshape(images.shape[0], -1) - self.mean) / self.scale

    @property
    def x_train(self) -> torch.Tensor:
        return self.standardize(self.images_train)

    @property
    def x_test(self) -> torch.Tensor:
        return self.standardize(self.images_test)


def digits_split(
    test_fraction: float = 0.25,
    seed: int = 0,
    *,
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: torch.device | str | None = None,
) -> DigitsSplit:
    """A stratified train/test split of the digits (``sklearn.model_selection.train_test_split``).

    The same ``seed`` always gives the same split (scikit-learn's ``random_state``); class
    proportions are kept in both parts.

    Args:
        test_fraction: fraction of the 1,797 images held out, in ``(0, 1)``.
        seed: non-negative int, the split's ``random_state``.
        dtype, device: of the returned tensors (clkit's default device when ``None``).

    Raises:
        ValueError: naming ``test_fraction`` or ``seed`` when out of range.
    """
    from sklearn.model_selection import train_test_split

    test_fraction = check_positive("test_fraction", test_fraction)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    images, labels = load_digits_images(dtype=dtype, device=device)
    index = torch.arange(labels.numel())
    train, test = train_test_split(index.numpy(), test_size=test_fraction, random_state=seed,
                                   stratify=labels.cpu().numpy())
    train_t = torch.as_tensor(train, device=images.device)
    test_t = torch.as_tensor(test, device=images.device)
    flat = images[train_t].reshape(len(train), -1)
    mean = flat.mean(dim=0)
    scale = flat.std(dim=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return DigitsSplit(images[train_t], images[test_t], labels[train_t], labels[test_t],
                       mean, scale)


def augment_digits(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    max_shift: float = 1.0,
    max_rotation: float = 15.0,
    noise_std: float = 0.0,
    cutout: int = 0,
) -> torch.Tensor:
    """One random augmentation of every image of a batch, drawn from ``generator``.

    For each image independently: a rotation by an angle uniform in
    ``[-max_rotation, max_rotation]`` degrees and a shift uniform in ``[-max_shift, max_shift]``
    pixels along each axis (one affine map, bilinear interpolation, background 0 outside the
    image, ``torch.nn.functional.grid_sample``); then, if ``cutout > 0``, a ``cutout x cutout``
    square at a uniform position set to the background 0 (DeVries & Taylor 2017); then additive
    Gaussian noise :math:`\\varepsilon\\sim\\mathcal N(0, \\texttt{noise\\_std}^2)` per pixel. Without
    noise every output value lies in ``[min(images, 0), max(images)]`` (bilinear interpolation is
    a convex combination of pixels and the background); labels are unchanged.

    Args:
        images: ``(n, 8, 8)`` (or ``(n, h, w)``) floating tensor of raw grey levels.
        generator: the ``torch.Generator`` every random draw comes from (on ``images``' device).
        max_shift: largest shift in pixels, >= 0.
        max_rotation: largest rotation in degrees, in ``[0, 180]``.
        noise_std: standard deviation of the additive noise, >= 0 (grey levels).
        cutout: side of the cut-out square in pixels, an int in ``[0, min(h, w)]``.

    Returns a tensor of ``images``' shape, dtype and device.

    Raises:
        ValueError: naming the argument for a wrong shape, non-finite images or out-of-range
            parameters.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 3 or not images.is_floating_point():
        raise ValueError("images must be a floating (n, h, w) tensor")
    if images.shape[0] == 0 or not bool(torch.isfinite(images).all()):
        raise ValueError("images must be non-empty and finite")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    max_shift = check_nonnegative("max_shift", max_shift)
    max_rotation = check_nonnegative("max_rotation", max_rotation)
    if max_rotation > 180:
        raise ValueError(f"max_rotation must be in [0, 180] degrees, got {max_rotation}")
    noise_std = check_nonnegative("noise_std", noise_std)
    n, h, w = images.shape
    if isinstance(cutout, bool) or not isinstance(cutout, int) or not 0 <= cutout <= min(h, w):
        raise ValueError(f"cutout must be an int in [0, {min(h, w)}], got {cutout!r}")
    kw = {"generator": generator, "device": images.device, "dtype": images.dtype}
    angle = (2 * torch.rand(n, **kw) - 1) * math.radians(max_rotation)
    shift = (2 * torch.rand(n, 2, **kw) - 1) * max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid works in normalised coordinates [-1, 1]: a shift of s pixels is 2 s / size.
    theta = torch.stack([
        torch.stack([cos, -sin * h / w, shift[:, 0] * 2 / w], dim=1),
        torch.stack([sin * w / h, cos, shift[:, 1] * 2 / h], dim=1),
    ], dim=1)
    grid = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(images[:, None], grid, mode="bilinear",
                                          padding_mode="zeros", align_corners=False)[:, 0]
    if cutout > 0:
        top = torch.randint(0, h - cutout + 1, (n,), generator=generator, device=images.device)
        left = torch.randint(0, w - cutout + 1, (n,), generator=generator, device=images.device)
        rows = torch.arange(h, device=images.device)
        cols = torch.arange(w, device=images.device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + cutout)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + cutout)
        out = out.masked_fill(in_rows[:, :, None] & in_cols[:, None, :], 0.0)
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, **kw)
    return out


def fit_shared_covariance_mixture(x: torch.Tensor, labels: torch.Tensor) -> GaussianMixture:
    """Maximum-likelihood shared-covariance Gaussian mixture of labelled data.

    .. math::
        w_k = \\frac{n_k}{n},\\qquad \\mu_k = \\frac1{n_k}\\sum_{i:y_i=k}x_i,\\qquad
        \\Sigma = \\frac1n\\sum_k\\sum_{i:y_i=k}(x_i-\\mu_k)(x_i-\\mu_k)^\\top,

    the model of Bansal et al. (2024) (the pooled within-class covariance of LDA, Fisher 1936).
    By the law of total covariance its covariance :math:`\\Sigma + \\sum_kw_k(\\mu_k-\\bar\\mu)
    (\\mu_k-\\bar\\mu)^\\top` equals the sample covariance of ``x`` (divisor ``n``).

    Args:
        x: ``(n, d)`` floating features.
        labels: ``(n,)`` integer labels; the classes are the sorted distinct labels.

    Returns a :class:`clkit.GaussianMixture` with one shared ``(d, d)`` covariance.

    Raises:
        ValueError: naming ``x`` or ``labels`` for wrong shapes, non-finite features, a class with
            fewer than two points, or a singular pooled covariance.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError("x must be a floating (n, d) tensor")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],) \
            or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({x.shape[0]},)")
    classes, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2 or bool((counts < 2).any()):
        raise ValueError("labels must name at least two classes of at least two points each")
    one_hot = torch.nn.functional.one_hot(index, len(classes)).to(x.dtype)
    counts_f = counts.to(x.dtype)
    means = (one_hot.T @ x) / counts_f[:, None]
    centred = x - means[index]
    cov = centred.T @ centred / x.shape[0]
    cov = (cov + cov.T) / 2
    if float(torch.linalg.eigvalsh(cov)[0]) <= 1e-12 * float(cov.diagonal().max()):
        raise ValueError("x has a singular pooled within-class covariance (reduce dimension first)")
    return GaussianMixture(counts_f / x.shape[0], means, cov)


def sample_class_partners(
    labels: torch.Tensor, delta: float, generator: torch.Generator
) -> torch.Tensor:
    r"""Partner indices for the empirical augmentation pairs of Bansal et al. (2024).

    For each ``i`` independently: with probability ``delta`` the partner is uniform among the
    points with label ``labels[i]`` (``i`` included), otherwise uniform among all points. With
    ``x_i`` drawn from the empirical distribution this is the sample analogue of the pair law
    :math:`\hat F = \delta\sum_kw_k\,F_k\times F_k + (1-\delta)F\times F`, so the fraction of
    same-label pairs is :math:`\delta + (1-\delta)\sum_k w_k^2` in expectation.

    Args:
        labels: ``(n,)`` integer labels, ``n >= 1``.
        delta: probability in ``[0, 1]``.
        generator: the only source of randomness (on ``labels``' device).

    Returns an ``int64`` tensor of ``n`` indices into ``labels``.

    Raises:
        ValueError: naming ``labels``, ``delta`` or ``generator``.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.numel() == 0 \
            or labels.is_floating_point():
        raise ValueError("labels must be a non-empty 1-D integer tensor")
    delta = check_nonnegative("delta", delta)
    if delta > 1:
        raise ValueError(f"delta must be in [0, 1], got {delta}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    n = labels.numel()
    device = labels.device
    order = torch.argsort(labels, stable=True)
    classes, counts = torch.unique(labels[order], return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    cls = torch.searchsorted(classes, labels)
    same = torch.rand(n, generator=generator, device=device) < delta
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    partner = order[start[cls] + torch.minimum((u * counts[cls]).long(), counts[cls] - 1)]
    anyone = torch.randint(0, n, (n,), generator=generator, device=device)
    return torch.where(same, partner, anyone)


def augmentation_variance(view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
    r"""Per-coordinate augmentation variance from two views of the same points.

    .. math:: \hat\sigma^2 = \frac{1}{2pn}\sum_{i=1}^n\lVert h^+_{1,i} - h^+_{2,i}\rVert^2 ,

    unbiased for :math:`\sigma^2` in the model of Gui, Ma & Zhong (2023) where
    :math:`h^+_{1}, h^+_{2}\mid h \overset{iid}{\sim}\mathcal N(h, \sigma^2 I_p)`: the difference of
    two views has covariance :math:`2\sigma^2 I_p`, whatever :math:`h`.

    Args:
        view1, view2: ``(..., n, p)`` floating tensors of the same shape, ``n >= 1``.

    Returns a tensor of shape ``view1.shape[:-2]`` (0-d for one sample).

    Raises:
        ValueError: naming ``view1`` or ``view2`` for mismatched shapes or non-finite values.
    """
    for name, v in (("view1", view1), ("view2", view2)):
        if not isinstance(v, torch.Tensor) or v.ndim < 2 or not v.is_floating_point() \
                or v.shape[-2] == 0 or not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} must be a finite floating (..., n, p) tensor, n >= 1")
    if view1.shape != view2.shape:
        raise ValueError(f"view1 and view2 must have the same shape, got "
                         f"{tuple(view1.shape)} and {tuple(view2.shape)}")
    p = view1.shape[-1]
    return ((view1 - view2) ** 2).sum(-1).mean(-1) / (2 * p)


def rotate_digits(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Every image of a batch rotated by the same angle about its centre.

    The deterministic member :math:`A_\theta` of the rotation family that
    :func:`augment_digits` samples from (same affine map with zero shift, bilinear interpolation,
    background 0), for evaluating a representation under one fixed augmentation.

    Args:
        images: ``(n, h, w)`` floating tensor.
        degrees: rotation angle in degrees, in ``[-180, 180]`` (positive: counter-clockwise).

    Returns a tensor of ``images``' shape, dtype and device.

    Raises:
        ValueError: naming ``images`` or ``degrees``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 3 or not images.is_floating_point():
        raise ValueError("images must be a floating (n, h, w) tensor")
    angle = float(degrees) if isinstance(degrees, (int, float)) else float("nan")
    if not math.isfinite(angle) or abs(angle) > 180:
        raise ValueError(f"degrees must be a finite number in [-180, 180], got {degrees!r}")
    n, h, w = images.shape
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]],
                         dtype=images.dtype, device=images.device).expand(n, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return torch.nn.functional.grid_sample(images[:, None], grid, mode="bilinear",
                                           padding_mode="zeros", align_corners=False)[:, 0]
