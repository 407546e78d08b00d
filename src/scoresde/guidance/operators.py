"""Linear measurement operators ``y = A x`` for inverse problems (Song et al. 2021, App. I).

An operator maps a batch ``x: (B, *in_shape)`` to observations ``(B, *out_shape)`` and back
with its transpose.  Projection-based conditioning also needs the pseudo-inverse ``A^+`` and the
projection ``P = A^+ A`` onto the row space of ``A`` (the part of ``x`` that the measurement
determines).  Each operator computes them in closed form where it can: the SVD for a matrix, a
selection for inpainting, the channel mean for colorization; an operator given only as a pair of
functions solves ``A A^T u = y`` by conjugate gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from scoresde._core.checks import check_finite

__all__ = [
    "Colorization",
    "FunctionOperator",
    "Inpainting",
    "LinearOperator",
    "MatrixOperator",
    "check_operator",
]


def _shape(shape: Sequence[int] | torch.Size, name: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or any(s < 1 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive sizes, got {shape}")
    return shape


class LinearOperator:
    """A linear map ``A: R^{in_shape} -> R^{out_shape}`` applied per sample.

    Subclasses implement :meth:`_forward` and :meth:`_transpose` on checked batches; they may
    override :meth:`_pinv` with a closed form.

    Attributes:
        in_shape: the shape ``D`` of one signal ``x``.
        out_shape: the shape ``M`` of one observation ``y``.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]) -> None:
        self.in_shape = _shape(in_shape, "in_shape")
        self.out_shape = _shape(out_shape, "out_shape")

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_shape)

    # ------------------------------------------------------------------ #
    # Checked public maps.
    # ------------------------------------------------------------------ #
    def check_input(self, x: Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(B, *in_shape)``."""
        if not torch.is_tensor(x):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but {type(self).__name__} expects (B, *{self.in_shape})"
            )

    def check_observation(self, y: Tensor, name: str = "y") -> None:
        """Raise ``ValueError`` unless ``y`` has shape ``(B, *out_shape)``."""
        if not torch.is_tensor(y):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
        if tuple(y.shape[1:]) != self.out_shape:
            raise ValueError(
                f"{name} has shape {tuple(y.shape)} but {type(self).__name__} observes (B, *{self.out_shape})"
            )
        check_finite(y, name)

    def batch_observations(self, y_obs: Tensor | None) -> Tensor:
        """Checked observations ``(B, *out_shape)`` from ``(*out_shape)``, ``(1, *out_shape)`` or
        ``(B, *out_shape)`` (one observation is a batch of one)."""
        if not torch.is_tensor(y_obs):
            raise TypeError(f"y_obs must be a torch.Tensor, got {type(y_obs).__name__}")
        if tuple(y_obs.shape) == self.out_shape:
            y_obs = y_obs[None]
        self.check_observation(y_obs, "y_obs")
        return y_obs

    def match_observations(self, y_obs: Tensor | None, x: Tensor) -> Tensor:
        """The observations for the batch ``x: (B, *in_shape)``: ``y_obs`` as
        :meth:`batch_observations` accepts it, one observation expanded to all ``B``, in ``x``'s
        dtype and device.

        Raises:
            ValueError: ``x`` or ``y_obs`` of the wrong shape, or a batch of observations
                that is neither 1 nor ``B``.
        """
        self.check_input(x)
        y_obs = self.batch_observations(y_obs)
        if y_obs.shape[0] == x.shape[0]:
            return y_obs.to(x)
        if y_obs.shape[0] == 1:
            return y_obs.to(x).expand(x.shape[0], *y_obs.shape[1:])
        raise ValueError(
            f"y_obs has a batch of {y_obs.shape[0]} observations for a batch of {x.shape[0]} samples"
        )

    def forward(self, x: Tensor) -> Tensor:
        """``A x``: ``(B, *in_shape) -> (B, *out_shape)``."""
        self.check_input(x)
        return self._forward(x)

    __call__ = forward

    def transpose(self, y: Tensor) -> Tensor:
        """``A^T y``: ``(B, *out_shape) -> (B, *in_shape)``."""
        self.check_observation(y)
        return self._transpose(y)

    def pinv(self, y: Tensor) -> Tensor:
        """``A^+ y``, the least-norm ``x`` with ``A x = y`` (``A`` of full row rank), ``(B, *in_shape)``."""
        self.check_observation(y)
        return self._pinv(y)

    def project(self, x: Tensor) -> Tensor:
        """``P x = A^+ A x``: the component of ``x`` that the measurement determines."""
        self.check_input(x)
        return self._pinv(self._forward(x))

    def to_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The dense matrix ``(out_features, in_features)`` of ``A`` (for tests and small problems)."""
        eye = torch.eye(self.in_features, dtype=dtype).reshape(self.in_features, *self.in_shape)
        return self._forward(eye).reshape(self.in_features, self.out_features).T

    # ------------------------------------------------------------------ #
    # What subclasses supply.
    # ------------------------------------------------------------------ #
    def _forward(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _transpose(self, y: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _pinv(self, y: Tensor) -> Tensor:
        """Default ``A^+ y = A^T (A A^T)^{-1} y`` by conjugate gradients on ``A A^T u = y``."""
        b = y.reshape(y.shape[0], -1)
        u = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = (r * r).sum(1, keepdim=True)
        tol = 1e-20 * (b * b).sum(1, keepdim=True).clamp_min(1e-300)
        for _ in range(max(2 * self.out_features, 10)):
            ap = self._forward(self._transpose(p.reshape(y.shape))).reshape(b.shape)
            alpha = rs / (p * ap).sum(1, keepdim=True).clamp_min(1e-300)
            u = u + alpha * p
            r = r - alpha * ap
            rs_new = (r * r).sum(1, keepdim=True)
            if bool((rs_new <= tol).all()):
                break
            p = r + (rs_new / rs.clamp_min(1e-300)) * p
            rs = rs_new
        return self._transpose(u.reshape(y.shape))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


class MatrixOperator(LinearOperator):
    """``A`` given as a dense matrix ``(M, N)``; signals of any shape with ``N`` elements.

    The pseudo-inverse and row-space projection come from the SVD ``A = U S V^T``, the
    decoupling Song et al. 2021 (App. I.3) use for colorization, generalised to any ``A``.

    Args:
        matrix: ``(M, N)``.
        in_shape: shape of one signal (default ``(N,)``), e.g. ``(C, H, W)`` with ``C H W = N``.
        rcond: singular values below ``rcond * max(S)`` count as zero.
    """

    def __init__(self, matrix: Tensor, in_shape: Sequence[int] | None = None, rcond: float = 1e-10) -> None:
        a = torch.as_tensor(matrix)
        if a.ndim != 2:
            raise ValueError(f"A must be a matrix of shape (M, N), got shape {tuple(a.shape)}")
        if not a.is_floating_point():
            a = a.to(torch.get_default_dtype())
        check_finite(a, "A")
        in_shape = (a.shape[1],) if in_shape is None else _shape(in_shape, "in_shape")
        if math.prod(in_shape) != a.shape[1]:
            raise ValueError(
                f"A has {a.shape[1]} columns but in_shape {tuple(in_shape)} has {math.prod(in_shape)}"
            )
        super().__init__(in_shape, (a.shape[0],))
        self.matrix = a
        u, s, vh = torch.linalg.svd(a.to(torch.float64), full_matrices=False)
        keep = s > rcond * s.max().clamp_min(1e-300)
        self.rank = int(keep.sum())
        self._u, self._s, self._vh = u[:, keep], s[keep], vh[keep]

    def _forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.matrix.to(x).T

    def _transpose(self, y: Tensor) -> Tensor:
        return (y @ self.matrix.to(y)).reshape(y.shape[0], *self.in_shape)

    def _pinv(self, y: Tensor) -> Tensor:
        coef = (y.to(torch.float64) @ self._u) / self._s  # S^{-1} U^T y
        return (coef @ self._vh).to(y.dtype).reshape(y.shape[0], *self.in_shape)


class FunctionOperator(LinearOperator):
    """``A`` given as a pair of functions ``forward(x)`` and ``transpose(y)``.

    Args:
        forward: ``(B, *in_shape) -> (B, *out_shape)``.
        transpose: its adjoint ``(B, *out_shape) -> (B, *in_shape)``.
        in_shape, out_shape: shapes of one signal and one observation.
        pinv: optional closed-form ``A^+``; conjugate gradients on ``A A^T`` otherwise.
    """

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        transpose: Callable[[Tensor], Tensor],
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        pinv: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(in_shape, out_shape)
        self._fwd, self._adj, self._pinv_fn = forward, transpose, pinv

    def _forward(self, x: Tensor) -> Tensor:
        out = self._fwd(x)
        if tuple(out.shape) != (x.shape[0], *self.out_shape):
            raise ValueError(f"forward returned shape {tuple(out.shape)}, expected (B, *{self.out_shape})")
        return out

    def _transpose(self, y: Tensor) -> Tensor:
        out = self._adj(y)
        if tuple(out.shape) != (y.shape[0], *self.in_shape):
            raise ValueError(f"transpose returned shape {tuple(out.shape)}, expected (B, *{self.in_shape})")
        return out

    def _pinv(self, y: Tensor) -> Tensor:
        return self._pinv_fn(y) if self._pinv_fn is not None else super()._pinv(y)


class Inpainting(LinearOperator):
    """Observe the entries where ``mask`` is true: ``y = x[:, mask]`` (Song et al. 2021, App. I.2).

    Args:
        mask: boolean ``in_shape`` (e.g. ``(C, H, W)``, or ``(D,)`` for vectors); true = known.
            A mask with a leading singleton channel is broadcast with ``channels``.
        channels: for an image mask ``(1, H, W)`` or ``(H, W)``: the number of channels to
            broadcast it to.
    """

    def __init__(self, mask: Tensor, channels: int | None = None) -> None:
        m = torch.as_tensor(mask)
        if m.dtype != torch.bool:
            if bool(((m != 0) & (m != 1)).any()):
                raise ValueError("mask must be boolean or hold only 0 and 1")
            m = m.bool()
        if channels is not None:
            if m.ndim == 2:
                m = m[None]
            if m.shape[0] != 1:
                raise ValueError(f"channels= needs a mask of shape (1, H, W) or (H, W), got {tuple(m.shape)}")
            m = m.expand(channels, *m.shape[1:])
        if m.ndim < 1:
            raise ValueError("mask must have at least one dimension")
        n_known = int(m.sum())
        if n_known == 0:
            raise ValueError("mask observes nothing (no true entry)")
        super().__init__(tuple(m.shape), (n_known,))
        self.mask = m.contiguous()

    def _forward(self, x: Tensor) -> Tensor:
        return x[:, self.mask.to(x.device)]

    def _transpose(self, y: Tensor) -> Tensor:
        out = y.new_zeros(y.shape[0], *self.in_shape)
        out[:, self.mask.to(y.device)] = y
        return out

    def _pinv(self, y: Tensor) -> Tensor:
        return self._transpose(y)  # A A^T = I for a selection.


class Colorization(LinearOperator):
    """Observe the grayscale image: the mean over channels, ``(B, C, *S) -> (B, 1, *S)``.

    Song et al. 2021 (App. I.3) decouple gray and colour by an orthogonal change of basis;
    here ``A A^T = I / C`` so ``A^+ y`` copies the gray value to every channel and
    ``P x`` replaces each pixel by its channel mean.

    Args:
        image_shape: ``(C, *S)``, e.g. ``(3, H, W)``.
    """

    def __init__(self, image_shape: Sequence[int]) -> None:
        shape = _shape(image_shape, "image_shape")
        if len(shape) < 2:
            raise ValueError(f"image_shape must be (C, *S) with spatial dims, got {shape}")
        super().__init__(shape, (1, *shape[1:]))
        self.channels = shape[0]

    def _forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1, keepdim=True)

    def _transpose(self, y: Tensor) -> Tensor:
        return (y / self.channels).expand(y.shape[0], *self.in_shape).clone()

    def _pinv(self, y: Tensor) -> Tensor:
        return y.expand(y.shape[0], *self.in_shape).clone()


def check_operator(operator: object) -> LinearOperator:
    """Return ``operator``, raising ``TypeError`` unless it is a :class:`LinearOperator`."""
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    return operator
