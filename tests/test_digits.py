"""Tests of clkit.digits: the handwritten-digits data module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clkit


@pytest.fixture(scope="module")
def split() -> clkit.DigitsSplit:
    return clkit.digits_split(0.25, seed=0, device="cpu")


def test_loader_shapes_dtypes_and_ranges() -> None:
    images, labels = clkit.load_digits_images(device="cpu")
    assert images.shape == (1797, 8, 8) and images.dtype == torch.float64
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == clkit.DIGITS_MAX_VALUE
    assert sorted(labels.unique().tolist()) == list(range(10))
    images32, _ = clkit.load_digits_images(dtype=torch.float32, device="cpu")
    assert images32.dtype == torch.float32


def test_split_is_deterministic_stratified_and_disjoint(split: clkit.DigitsSplit) -> None:
    again = clkit.digits_split(0.25, seed=0, device="cpu")
    assert torch.equal(split.images_train, again.images_train)
    assert torch.equal(split.y_test, again.y_test)
    other = clkit.digits_split(0.25, seed=1, device="cpu")
    assert not torch.equal(split.y_train, other.y_train)
    assert split.images_train.shape[0] + split.images_test.shape[0] == 1797
    assert split.images_test.shape[0] == 450
    train_freq = torch.bincount(split.y_train, minlength=10) / split.y_train.numel()
    test_freq = torch.bincount(split.y_test, minlength=10) / split.y_test.numel()
    assert float((train_freq - test_freq).abs().max()) < 0.01
    # disjoint: no test image equals a training image at the same position in the full set
    images, _ = clkit.load_digits_images(device="cpu")
    assert images.shape[0] == split.images_train.shape[0] + split.images_test.shape[0]


def test_standardisation_uses_training_statistics(split: clkit.DigitsSplit) -> None:
    x = split.x_train
    assert x.shape == (split.images_train.shape[0], 64)
    torch.testing.assert_close(x.mean(0), torch.zeros(64, dtype=x.dtype), atol=1e-12, rtol=0)
    std = x.std(0)
    varying = split.images_train.reshape(-1, 64).std(0) > 0
    torch.testing.assert_close(std[varying], torch.ones_like(std[varying]))
    assert split.x_test.shape == (450, 64)
    with pytest.raises(ValueError, match="images"):
        split.standardize(torch.zeros(3, 64, dtype=torch.float64))


def test_augmentation_preserves_shape_range_and_is_seeded(split: clkit.DigitsSplit) -> None:
    images = split.images_train[:200]
    kwargs = {"max_shift": 1.0, "max_rotation": 15.0, "cutout": 3}
    out1 = clkit.augment_digits(images, torch.Generator().manual_seed(3), **kwargs)
    out2 = clkit.augment_digits(images, torch.Generator().manual_seed(3), **kwargs)
    assert out1.shape == images.shape and out1.dtype == images.dtype
    assert torch.equal(out1, out2)
    assert float(out1.min()) >= 0.0 and float(out1.max()) <= clkit.DIGITS_MAX_VALUE + 1e-12
    assert not torch.equal(out1, images)
    # every image has exactly a 3x3 block of zeros at least (the cut-out)
    assert bool(((out1 == 0).reshape(200, -1).sum(1) >= 9).all())


def test_identity_augmentation_returns_the_images(split: clkit.DigitsSplit) -> None:
    images = split.images_train[:50]
    out = clkit.augment_digits(images, torch.Generator().manual_seed(0), max_shift=0.0,
                               max_rotation=0.0)
    torch.testing.assert_close(out, images, atol=1e-12, rtol=0)


def test_integer_shift_moves_pixels() -> None:
    images = torch.zeros(1, 8, 8, dtype=torch.float64)
    images[0, 3, 3] = 1.0
    # a shift of exactly +-1 pixel in each axis: the bright pixel lands on a neighbour
    out = clkit.augment_digits(images.expand(400, 8, 8).clone(),
                               torch.Generator().manual_seed(0), max_shift=1.0, max_rotation=0.0)
    torch.testing.assert_close(out.sum((1, 2)).max(), torch.tensor(1.0, dtype=torch.float64))
    centre = torch.stack([(out.sum(2) * torch.arange(8.0, dtype=out.dtype)).sum(1),
                          (out.sum(1) * torch.arange(8.0, dtype=out.dtype)).sum(1)], 1)
    moved = centre[out.sum((1, 2)) > 0.999]  # shifts that keep the pixel inside
    assert float((moved - 3).abs().max()) <= 1.0 + 1e-9
    assert float((moved - 3).abs().max()) > 0.9


def test_rotation_angle_matches_the_requested_maximum() -> None:
    """A bar through the centre rotated by angles uniform in [-a, a]: its orientation's spread."""
    images = torch.zeros(2000, 8, 8, dtype=torch.float64)
    images[:, :, 3:5] = 1.0  # vertical bar, symmetric about the centre
    out = clkit.augment_digits(images, torch.Generator().manual_seed(0), max_shift=0.0,
                               max_rotation=20.0)
    coords = torch.arange(8.0, dtype=out.dtype) - 3.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    w = out / out.sum((1, 2), keepdim=True)
    cxy = (w * xx * yy).sum((1, 2))
    cyy = (w * yy * yy).sum((1, 2))
    cxx = (w * xx * xx).sum((1, 2))
    angle = 0.5 * torch.atan2(2 * cxy, cyy - cxx)  # orientation from the vertical
    assert float(angle.abs().max()) < torch.deg2rad(torch.tensor(20.0)).item() * 1.1
    assert float(angle.abs().max()) > torch.deg2rad(torch.tensor(20.0)).item() * 0.6


def test_gaussian_noise_has_the_requested_variance(split: clkit.DigitsSplit) -> None:
    images = split.images_train
    out = clkit.augment_digits(images, torch.Generator().manual_seed(1), max_shift=0.0,
                               max_rotation=0.0, noise_std=0.7)
    noise = (out - images).flatten()
    se = 0.49 * (2 / noise.numel()) ** 0.5
    assert abs(float(noise.var()) - 0.49) < 5 * se
    assert abs(float(noise.mean())) < 5 * 0.7 / noise.numel() ** 0.5


def test_augmentation_is_device_agnostic_and_keeps_dtype() -> None:
    images = torch.rand(5, 8, 8, dtype=torch.float32) * 16
    out = clkit.augment_digits(images, torch.Generator().manual_seed(0), noise_std=0.1, cutout=2)
    assert out.dtype == torch.float32 and out.device == images.device


@pytest.mark.parametrize("kwargs, name", [
    ({"max_shift": -1.0}, "max_shift"), ({"max_rotation": 200.0}, "max_rotation"),
    ({"noise_std": float("nan")}, "noise_std"), ({"cutout": 9}, "cutout"),
    ({"cutout": 1.5}, "cutout"),
])
def test_augmentation_rejects_bad_arguments(kwargs: dict, name: str) -> None:
    images = torch.zeros(2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=name):
        clkit.augment_digits(images, torch.Generator(), **kwargs)


def test_augmentation_rejects_bad_images_and_generator() -> None:
    with pytest.raises(ValueError, match="images"):
        clkit.augment_digits(torch.zeros(2, 64), torch.Generator())
    with pytest.raises(ValueError, match="images"):
        clkit.augment_digits(torch.full((1, 8, 8), float("inf")), torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        clkit.augment_digits(torch.zeros(2, 8, 8), 0)  # type: ignore[arg-type]


def test_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        clkit.digits_split(1.5)
    with pytest.raises(ValueError, match="test_fraction"):
        clkit.digits_split(0.0)
    with pytest.raises(ValueError, match="seed"):
        clkit.digits_split(0.25, seed=-1)
    with pytest.raises(ValueError, match="dtype"):
        clkit.load_digits_images(dtype=torch.int64)


def test_fitted_mixture_matches_sklearn_lda_and_total_covariance() -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (500,), generator=gen)
    x = torch.randn(500, 4, generator=gen, dtype=torch.float64) + labels[:, None].double()
    mixture = clkit.fit_shared_covariance_mixture(x, labels)
    lda = LinearDiscriminantAnalysis(solver="lsqr", store_covariance=True)
    lda.fit(x.numpy(), labels.numpy())
    cov = mixture.covariances if mixture.covariances.ndim == 2 else mixture.covariances[0]
    torch.testing.assert_close(cov, torch.as_tensor(lda.covariance_), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mixture.means, torch.as_tensor(lda.means_))
    torch.testing.assert_close(mixture.weights, torch.as_tensor(lda.priors_))
    total = torch.cov(x.T, correction=0)
    centred = mixture.means - mixture.weights @ mixture.means
    between = centred.T @ (mixture.weights[:, None] * centred)
    torch.testing.assert_close(cov + between, total)


def test_fitted_mixture_rejects_bad_input() -> None:
    x = torch.randn(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="labels"):
        clkit.fit_shared_covariance_mixture(x, torch.zeros(9, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        clkit.fit_shared_covariance_mixture(x, torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ValueError, match="x"):
        clkit.fit_shared_covariance_mixture(x[:, 0], torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ValueError, match="singular"):
        clkit.fit_shared_covariance_mixture(torch.zeros(10, 3, dtype=torch.float64),
                                            torch.arange(10) % 2)


def test_class_partners_same_label_fraction() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (20_000,), generator=gen)
    w = torch.bincount(labels).double() / labels.numel()
    for delta in (0.0, 0.4, 1.0):
        partner = clkit.sample_class_partners(labels, delta, torch.Generator().manual_seed(1))
        same = (labels[partner] == labels).double().mean()
        expected = delta + (1 - delta) * float((w ** 2).sum())
        se = (expected * (1 - expected) / labels.numel()) ** 0.5
        assert abs(float(same) - expected) <= 5 * se + 1e-12
    with pytest.raises(ValueError, match="delta"):
        clkit.sample_class_partners(labels, 1.5, gen)
    with pytest.raises(ValueError, match="labels"):
        clkit.sample_class_partners(labels.double(), 0.5, gen)


def test_augmentation_variance_recovers_sigma2_of_the_gaussian_model() -> None:
    gen = torch.Generator().manual_seed(0)
    h = 3 * torch.randn(4000, 5, generator=gen, dtype=torch.float64)
    sigma2 = 0.64
    v1 = h + sigma2**0.5 * torch.randn(h.shape, generator=gen, dtype=torch.float64)
    v2 = h + sigma2**0.5 * torch.randn(h.shape, generator=gen, dtype=torch.float64)
    est = float(clkit.augmentation_variance(v1, v2))
    se = sigma2 * (2 / (4000 * 5)) ** 0.5
    assert abs(est - sigma2) < 5 * se
    batched = clkit.augmentation_variance(torch.stack([v1, v2]), torch.stack([v2, v1]))
    assert batched.shape == (2,)
    with pytest.raises(ValueError, match="same shape"):
        clkit.augmentation_variance(v1, v2[:10])
    with pytest.raises(ValueError, match="view1"):
        clkit.augmentation_variance(v1[0], v2[0])


def test_rotate_digits_zero_is_identity_and_matches_scipy() -> None:
    images, _ = clkit.load_digits_images(device="cpu")
    batch = images[:20]
    torch.testing.assert_close(clkit.rotate_digits(batch, 0.0), batch, atol=1e-12, rtol=0)
    # an independent implementation: scipy's bilinear rotation about the centre, zeros outside
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    asym = torch.zeros(1, 8, 8, dtype=torch.float64)
    asym[0, 1, 1:6] = 16.0  # an "L": no rotation or reflection symmetry
    asym[0, 1:7, 1] = 9.0
    asym[0, 6, 5] = 4.0
    for angle in (-30.0, -7.5, 10.0, 45.0, 90.0):
        for stack in (batch, asym):
            ours = clkit.rotate_digits(stack, angle).numpy()
            ref = np.stack([scipy_ndimage.rotate(x, angle, reshape=False, order=1,
                                                 mode="grid-constant", cval=0.0)
                            for x in stack.numpy()])
            np.testing.assert_allclose(ours, ref, atol=1e-12, rtol=0)
    # direction: +90 degrees is counter-clockwise as displayed (top row -> left column)
    turned = clkit.rotate_digits(asym, 90.0)[0]
    torch.testing.assert_close(turned, torch.rot90(asym[0], 1), atol=1e-12, rtol=0)
    # inverse pairs: +a then -a returns the interior of the image (bilinear blur aside, an
    # exact inverse only at multiples of 90 degrees)
    back = clkit.rotate_digits(clkit.rotate_digits(asym, 90.0), -90.0)
    torch.testing.assert_close(back, asym, atol=1e-12, rtol=0)
    # a rotation matches augment_digits with max_rotation = angle when the draw is the extreme
    bar = torch.zeros(1, 8, 8, dtype=torch.float64)
    bar[0, :, 3:5] = 1.0
    turned = clkit.rotate_digits(bar, 90.0)
    torch.testing.assert_close(turned[0].T, bar[0], atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="degrees"):
        clkit.rotate_digits(batch, 200.0)
    with pytest.raises(ValueError, match="images"):
        clkit.rotate_digits(batch.reshape(20, 64), 10.0)
