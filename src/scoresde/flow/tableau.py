"""Butcher tableaux of embedded explicit Runge-Kutta pairs (what a step computes).

Kept apart from the step-size controller (:mod:`scoresde.flow.controller`) and the error norm
(:mod:`scoresde.flow.norm`), as diffrax separates them: an integrator is a tableau, a
controller and a norm.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BOSH3", "DOPRI5", "ButcherTableau"]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit embedded Runge-Kutta pair with the first-same-as-last (FSAL) property.

    Stage ``i`` is evaluated at ``u + c[i] h`` on ``y + h sum_j a[i][j] k_j``; the last row of
    ``a`` holds the weights ``b`` of the propagated solution (FSAL: the last stage is the
    vector field at the new point, the next step's first stage).

    Attributes:
        name: the method's name.
        c: the nodes, one per stage.
        a: the coupling coefficients, row ``i`` of length ``i``.
        b_error: ``b - b_hat``, the weights of the local error estimate (against the embedded
            lower-order solution).
        order: the order of the propagated solution.
        error_order: the order of the embedded solution.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b_error: tuple[float, ...]
    order: int
    error_order: int

    def __post_init__(self) -> None:
        n = len(self.c)
        if len(self.a) != n or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"{self.name}: a must have rows of length 0, 1, ..., {n - 1}")
        if len(self.b_error) != n:
            raise ValueError(f"{self.name}: b_error needs one weight per stage ({n})")

    @property
    def stages(self) -> int:
        return len(self.c)


DOPRI5 = ButcherTableau(
    # Dormand & Prince (1980) 5(4) (Hairer, Norsett & Wanner, Solving ODEs I, Table II.5.2).
    name="dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    # 5th-order weights minus the embedded 4th-order ones: the local error estimate.
    b_error=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    order=5,
    error_order=4,
)
"""Dormand-Prince 5(4), the paper's RK45 (Song et al. 2021, App. D.2)."""


BOSH3 = ButcherTableau(
    # Bogacki & Shampine (1989) 3(2), torchdiffeq's ``bosh3`` and MATLAB's ode23.
    name="bosh3",
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    # 3rd-order weights (2/9, 1/3, 4/9, 0) minus the embedded 2nd-order (7/24, 1/4, 1/3, 1/8).
    b_error=(-5 / 72, 1 / 12, 1 / 9, -1 / 8),
    order=3,
    error_order=2,
)
"""Bogacki-Shampine 3(2): four stages (three new evaluations per step, FSAL)."""
