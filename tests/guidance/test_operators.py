"""Linear operators: adjoint, pseudo-inverse and projection against dense linear algebra; bad input."""

from __future__ import annotations

import pytest
import torch

from scoresde.guidance import Colorization, FunctionOperator, Inpainting, MatrixOperator


def _operators() -> dict:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, generator=g, dtype=torch.float64)
    a_img = torch.randn(6, 16, generator=g, dtype=torch.float64)
    mask = torch.rand(1, 4, 4, generator=g) > 0.5
    return {
        "matrix": MatrixOperator(a),
        "matrix_image": MatrixOperator(a_img, in_shape=(1, 4, 4)),
        "function_cg": FunctionOperator(lambda x: x @ a.T, lambda y: y @ a, (5,), (3,)),
        "inpainting": Inpainting(mask),
        "inpainting_rgb": Inpainting(mask, channels=3),
        "colorization": Colorization((3, 2, 2)),
    }


@pytest.mark.parametrize("name", list(_operators()))
def test_operator_algebra_matches_dense(name: str) -> None:
    op = _operators()[name]
    a = op.to_matrix()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *op.in_shape, generator=g, dtype=torch.float64)
    y = torch.randn(4, *op.out_shape, generator=g, dtype=torch.float64)
    flat = x.reshape(4, -1)
    torch.testing.assert_close(op.forward(x).reshape(4, -1), flat @ a.T)
    # Adjoint: <A x, y> = <x, A^T y>.
    torch.testing.assert_close((op.forward(x) * y).sum(), (x * op.transpose(y)).sum())
    pinv = torch.linalg.pinv(a)
    torch.testing.assert_close(op.pinv(y).reshape(4, -1), y.reshape(4, -1) @ pinv.T)
    torch.testing.assert_close(op.project(x).reshape(4, -1), flat @ (pinv @ a).T)
    # P is a projection and A P = A.
    torch.testing.assert_close(op.project(op.project(x)), op.project(x))
    torch.testing.assert_close(op.forward(op.project(x)), op.forward(x))


def test_colorization_is_the_channel_mean() -> None:
    op = Colorization((3, 2, 2))
    x = torch.randn(2, 3, 2, 2)
    torch.testing.assert_close(op(x), x.mean(1, keepdim=True))
    assert op.pinv(op(x)).shape == (2, 3, 2, 2)
    torch.testing.assert_close(op.pinv(op(x))[:, 0], x.mean(1))


def test_bad_input_is_a_clear_error() -> None:
    op = Inpainting(torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(
        ValueError, match=r"x has shape \(2, 1, 5, 5\) but Inpainting expects \(B, \*\(1, 4, 4\)\)"
    ):
        op(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="y has shape"):
        op.transpose(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        Inpainting(torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="mask observes nothing"):
        Inpainting(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="channels= needs a mask of shape"):
        Inpainting(torch.ones(2, 4, 4, dtype=torch.bool), channels=3)
    with pytest.raises(ValueError, match=r"A must be a matrix of shape \(M, N\), got shape \(2, 3, 4\)"):
        MatrixOperator(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="A has 5 columns but in_shape"):
        MatrixOperator(torch.zeros(2, 5), in_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="A contains 1 non-finite"):
        MatrixOperator(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="image_shape must be"):
        Colorization((3,))
    op = Colorization((3, 2, 2))
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        op.pinv(torch.tensor([[[[float("nan"), 0.0], [0.0, 0.0]]]]))
    bad = FunctionOperator(lambda x: x[:, :2], lambda y: y, (3,), (2,))
    with pytest.raises(ValueError, match=r"transpose returned shape \(1, 2\), expected"):
        bad.transpose(torch.zeros(1, 2))
