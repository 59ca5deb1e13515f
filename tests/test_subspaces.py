"""clkit.subspaces against independent computations: scipy.linalg, explicit constructions, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import clkit

F64 = torch.float64


def _random(shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("shapes", [((7, 2), (7, 3)), ((6, 3), (6, 3)), ((9, 4), (9, 1)), ((5, 5), (5, 2))])
def test_principal_angles_match_scipy_subspace_angles(shapes):
    a, b = _random(shapes[0], 1), _random(shapes[1], 2)
    ours = clkit.principal_angles(a, b).numpy()
    reference = np.sort(scipy.linalg.subspace_angles(a.numpy(), b.numpy()))
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_principal_angles_are_ascending_and_in_range():
    angles = clkit.principal_angles(_random((10, 4), 3), _random((10, 5), 4))
    assert angles.shape == (4,)
    assert torch.all(angles[1:] >= angles[:-1])
    assert torch.all((angles >= 0) & (angles <= math.pi / 2))


def test_principal_angle_of_a_known_rotation_is_resolved_far_below_sqrt_eps():
    # span{e1} against span{cos t e1 + sin t e2}: the angle is t, even for t = 1e-12.
    for t in (1e-12, 1e-6, 0.3, math.pi / 2):
        a = torch.tensor([[1.0], [0.0], [0.0]], dtype=F64)
        b = torch.tensor([[math.cos(t)], [math.sin(t)], [0.0]], dtype=F64)
        assert abs(float(clkit.principal_angles(a, b)[0]) - t) <= 1e-15 + 1e-13 * t


def test_principal_angles_ignore_the_spanning_set():
    a = _random((8, 3), 5)
    mixed = a @ _random((3, 3), 6)  # same column space, different columns
    redundant = torch.cat([a, a[:, :1] + a[:, 1:2]], dim=1)  # rank-deficient spanning set
    assert float(clkit.principal_angles(a, mixed).max()) < 1e-7
    assert float(clkit.principal_angles(a, redundant).max()) < 1e-7
    assert clkit.principal_angles(a, redundant).shape == (3,)


def test_orthonormal_basis_is_orthonormal_and_rank_aware():
    a = _random((9, 2), 7) @ _random((2, 5), 8)  # rank 2, five columns
    q = clkit.orthonormal_basis(a)
    assert q.shape == (9, 2)
    torch.testing.assert_close(q.T @ q, torch.eye(2, dtype=F64), atol=1e-13, rtol=0)
    torch.testing.assert_close(q @ (q.T @ a), a, atol=1e-12, rtol=0)
    assert clkit.numerical_rank(a) == np.linalg.matrix_rank(a.numpy()) == 2


def test_orthogonal_projector_is_idempotent_and_symmetric():
    p = clkit.orthogonal_projector(_random((6, 2), 9))
    torch.testing.assert_close(p @ p, p, atol=1e-13, rtol=0)
    torch.testing.assert_close(p, p.T, atol=1e-15, rtol=0)
    assert abs(float(torch.trace(p)) - 2) < 1e-12


def test_energy_outside_matches_explicit_split():
    basis = torch.eye(5, dtype=F64)[:, :2]
    a = _random((5, 3), 10)
    expected = float(a[2:].pow(2).sum() / a.pow(2).sum())
    assert abs(float(clkit.energy_outside(a, basis)) - expected) < 1e-14
    assert float(clkit.energy_outside(basis @ _random((2, 3), 11), basis)) < 1e-28


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: clkit.principal_angles(torch.ones(3), torch.ones(3, 1)), "a"),
        (lambda: clkit.principal_angles(torch.ones(3, 1, dtype=F64), torch.ones(4, 1, dtype=F64)), "rows"),
        (lambda: clkit.principal_angles(torch.zeros(3, 2, dtype=F64), torch.ones(3, 1, dtype=F64)), "zero subspace"),
        (lambda: clkit.principal_angles(torch.full((3, 1), float("nan")), torch.ones(3, 1)), "a"),
        (lambda: clkit.energy_outside(torch.zeros(3, 1, dtype=F64), torch.ones(3, 1, dtype=F64)), "zero"),
        (lambda: clkit.orthonormal_basis(torch.ones(3, 2, dtype=F64), rtol=-1.0), "rtol"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
