"""Surrogate gradients of the spike function (docs/semantics.md section 9).

The spike is the Heaviside step ``s = H(x)`` of ``x = V - threshold`` (strict: ``x > 0``
spikes). Its derivative is zero almost everywhere, so training replaces it in the
backward pass by the derivative ``sigma'(x)`` of a smooth step (a *surrogate*), while the
forward pass keeps the exact step.

Two surrogates are provided, each with a ``scale`` that multiplies the derivative:

``ATan(alpha=2.0)``
    ``sigma'(x) = scale * (alpha / 2) / (1 + (pi * alpha * x / 2)**2)``, the derivative
    of the smooth step ``1/2 + arctan(pi * alpha * x / 2) / pi`` (snnTorch's ``atan``
    form; its integral over ``x`` is ``scale``). asynctorch's ``ATan`` is this
    divided by ``pi * alpha / 2``; ``ATan(alpha, scale=2 / (pi * alpha))`` reproduces it.
``FastSigmoid(slope=25.0)``
    ``sigma'(x) = scale / (1 + slope * |x|)**2``, the derivative of
    ``x / (1 + slope * |x|)`` (asynctorch and snnTorch ``fast_sigmoid``).

:func:`spike` is the differentiable step for user code; the engine uses fused
functions with the same gradients (``asyncsnn.torch._kernels``).

Examples
--------
>>> import torch
>>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
>>> s = spike(x, ATan(alpha=2.0))
>>> s.tolist()
[0.0, 0.0, 1.0]
>>> s.sum().backward()
>>> [round(v, 4) for v in x.grad.tolist()]
[0.2884, 1.0, 0.2884]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from asyncsnn.exceptions import ParameterError, invalid

__all__ = ["ATan", "FastSigmoid", "Surrogate", "make_surrogate", "spike"]


@dataclass(frozen=True)
class Surrogate:
    """Base class: a smooth step whose derivative replaces the spike's in the backward pass.

    Subclasses implement :meth:`derivative` (``sigma'(x)``, including ``scale``) and
    :meth:`primitive` (a smooth step whose derivative is :meth:`derivative`).
    """

    scale: float = field(default=1.0, kw_only=True)

    name = "surrogate"

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise invalid(ParameterError, name, value, "must be a finite number > 0", type(self).__name__)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative ``sigma'(x)``, same shape and dtype as ``x``."""
        raise NotImplementedError

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """A smooth step whose derivative is :meth:`derivative` (used to check it)."""
        raise NotImplementedError

    def _derivative_np(self, x: np.ndarray) -> np.ndarray:
        """:meth:`derivative` of a float32 numpy array, bit for bit (the engine's host backend).

        The built-in surrogates do the same float32 operations in numpy, at a fraction of
        the cost of torch calls on the few values of a forward step; a subclass that
        overrides :meth:`derivative` only is evaluated in torch.
        """
        return self.derivative(torch.from_numpy(x)).numpy()

    def _kernel_params(self) -> tuple[str, float, float] | None:
        """``(name, p, q)`` of the Rust kernels' float32 evaluation of :meth:`derivative`.

        ``None`` when the derivative is not a built-in one (a subclass that overrides
        :meth:`derivative`): the caller then evaluates it in torch.
        """
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, inverse of :func:`make_surrogate`."""
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class ATan(Surrogate):
    """Arctangent surrogate: ``scale * (alpha/2) / (1 + (pi alpha x / 2)^2)``.

    Parameters
    ----------
    alpha
        Sharpness (> 0); the derivative at 0 is ``scale * alpha / 2``.
    scale
        Multiplies the derivative (> 0).

    Examples
    --------
    >>> float(ATan(alpha=2.0).derivative(torch.tensor(0.0)))
    1.0
    """

    alpha: float = 2.0

    name = "atan"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * (alpha / 2) / (1 + (pi * alpha * x / 2)**2)``."""
        a = math.pi * self.alpha / 2.0
        return (x * a).square_().add_(1.0).reciprocal_().mul_(self.scale * self.alpha / 2.0)

    def _derivative_np(self, x: np.ndarray) -> np.ndarray:
        if type(self).derivative is not ATan.derivative:
            return super()._derivative_np(x)
        # torch multiplies a float32 tensor by a Python float rounded to float32.
        f32 = np.float32
        with np.errstate(over="ignore"):  # as in torch: a huge |x| gives inf, then 0
            y = x * f32(math.pi * self.alpha / 2.0)
            y = y * y + f32(1.0)
        d: np.ndarray = np.reciprocal(y, out=y) * f32(self.scale * self.alpha / 2.0)
        return d

    def _kernel_params(self) -> tuple[str, float, float] | None:
        if type(self).derivative is not ATan.derivative:
            return None
        return ("atan", math.pi * self.alpha / 2.0, self.scale * self.alpha / 2.0)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * (1/2 + arctan(pi * alpha * x / 2) / pi)``."""
        return self.scale * (0.5 + torch.atan((math.pi * self.alpha / 2.0) * x) / math.pi)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast-sigmoid surrogate: ``scale / (1 + slope |x|)^2``.

    Parameters
    ----------
    slope
        Sharpness (> 0); the derivative at 0 is ``scale``.
    scale
        Multiplies the derivative (> 0).

    Examples
    --------
    >>> float(FastSigmoid(slope=25.0).derivative(torch.tensor(0.04)))
    0.25
    """

    slope: float = 25.0

    name = "fast_sigmoid"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """``scale / (1 + slope * |x|)**2``."""
        return x.abs().mul_(self.slope).add_(1.0).square_().reciprocal_().mul_(self.scale)

    def _derivative_np(self, x: np.ndarray) -> np.ndarray:
        if type(self).derivative is not FastSigmoid.derivative:
            return super()._derivative_np(x)
        f32 = np.float32
        with np.errstate(over="ignore"):  # as in torch: a huge |x| gives inf, then 0
            y = np.abs(x) * f32(self.slope) + f32(1.0)
            y = y * y
        d: np.ndarray = np.reciprocal(y, out=y) * f32(self.scale)
        return d

    def _kernel_params(self) -> tuple[str, float, float] | None:
        if type(self).derivative is not FastSigmoid.derivative:
            return None
        return ("fast_sigmoid", self.slope, self.scale)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * x / (1 + slope * |x|)``."""
        return self.scale * x / (1.0 + self.slope * x.abs())


_SURROGATES: dict[str, type[Surrogate]] = {"atan": ATan, "fast_sigmoid": FastSigmoid}


def make_surrogate(spec: Surrogate | str | dict[str, Any] | None) -> Surrogate:
    """Build a surrogate from an instance, a name (``"atan"``, ``"fast_sigmoid"``) or a dict.

    ``None`` gives the default ``ATan(alpha=2.0)``.

    Raises
    ------
    ParameterError
        Unknown name or invalid parameters.
    """
    if spec is None:
        return ATan()
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict) and spec.get("name") in _SURROGATES:
        params = {k: v for k, v in spec.items() if k != "name"}
        try:
            return _SURROGATES[str(spec["name"])](**params)
        except TypeError as exc:
            raise invalid(ParameterError, "surrogate", spec, f"bad parameters ({exc})") from exc
    raise invalid(ParameterError, "surrogate", spec, f"must be a Surrogate or one of {sorted(_SURROGATES)}")


class _Spike(torch.autograd.Function):
    """``H(x)`` forward (strict), ``grad * sigma'(x)`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def spike(x: torch.Tensor, surrogate: Surrogate | None = None) -> torch.Tensor:
    """Differentiable spike: ``(x > 0)`` forward, ``sigma'(x)`` backward.

    Parameters
    ----------
    x
        ``V - threshold``, any shape.
    surrogate
        The surrogate (default ``ATan()``).

    Returns
    -------
    torch.Tensor
        0/1 values of the dtype of ``x``.
    """
    return _Spike.apply(x, make_surrogate(surrogate))  # type: ignore[no-any-return]
