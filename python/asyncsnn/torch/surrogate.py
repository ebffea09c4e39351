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

:func:`spike` is the differentiable step for user code. The engine uses two fused
functions, :func:`fire` (spike and reset ``V <- V (1 - s)`` of the neurons that fire)
and :func:`silent` (the zero-valued spike of a neuron that did not fire, see
``asyncsnn.torch.engine``), which compute the same gradients with fewer saved tensors.

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

import torch

from asyncsnn.exceptions import ParameterError, invalid

__all__ = ["ATan", "FastSigmoid", "Surrogate", "fire", "make_surrogate", "silent", "spike"]


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
        return (self.scale * self.alpha / 2.0) / (1.0 + (a * x) ** 2)

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
        return self.scale / (1.0 + self.slope * x.abs()) ** 2

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


class _Fire(torch.autograd.Function):
    """Spike and reset of the neurons that fire (R4.3.2 and section 9).

    Inputs ``V`` (membrane after integration), ``theta`` (broadcastable) and the bool
    ``fired`` mask (``V > theta`` for non-refractory neurons). Outputs ``s`` (1.0 where
    fired, else 0.0) and ``V (1 - s)``. Backward, with ``d = sigma'(V - theta)`` on fired
    neurons and 0 elsewhere: ``dV = gV (1 - fired) + (gs - gV V) d`` -- exactly the
    gradient of ``s = spike(V - theta)``, ``V <- V (1 - s)`` restricted to the neurons
    that fire (the others are unchanged and their step evaluation is not used).
    """

    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, theta: torch.Tensor, fired: torch.Tensor, surrogate: Surrogate
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(v, theta, fired)
        ctx.surrogate = surrogate
        ctx.mark_non_differentiable(fired)
        return fired.to(v.dtype), v.masked_fill(fired, 0.0)

    @staticmethod
    def backward(ctx: Any, g_s: torch.Tensor, g_v: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        v, theta, fired = ctx.saved_tensors
        d = ctx.surrogate.derivative(v - theta) * fired
        return g_v * ~fired + (g_s - g_v * v) * d, None, None, None


class _Silent(torch.autograd.Function):
    """The zero-valued spike of neurons that did not fire (section 9 of the engine docs).

    Inputs ``V``, ``theta`` and a bool ``mask`` of the neurons that carry a silent spike.
    Outputs ``c`` (all zeros: ``V <= theta`` for every such neuron, so ``H(V - theta)``
    is 0) and ``V (1 - c)`` (equal to ``V``). Backward, with ``d = sigma'(V - theta)``
    on the masked neurons: ``dV = gV + (gc - gV V) d``, the gradient of
    ``c = spike(V - theta)``, ``V <- V (1 - c)``.
    """

    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, surrogate: Surrogate
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(v, theta, mask)
        ctx.surrogate = surrogate
        return torch.zeros_like(v), v.clone()

    @staticmethod
    def backward(ctx: Any, g_c: torch.Tensor, g_v: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        v, theta, mask = ctx.saved_tensors
        d = ctx.surrogate.derivative(v - theta) * mask
        return g_v + (g_c - g_v * v) * d, None, None, None


def fire(
    v: torch.Tensor, theta: torch.Tensor, fired: torch.Tensor, surrogate: Surrogate
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike and reset, in the graph: returns ``(s, V * (1 - s))`` with ``s = fired``.

    Parameters
    ----------
    v
        Membrane ``[..., n]`` after integration.
    theta
        Thresholds, broadcastable to ``v``.
    fired
        Bool ``[..., n]``: the neurons that fire (``V > theta``, not refractory).
    surrogate
        The surrogate derivative used backward.
    """
    s, v_new = _Fire.apply(v, theta, fired, surrogate)
    return s, v_new


def silent(
    v: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, surrogate: Surrogate
) -> tuple[torch.Tensor, torch.Tensor]:
    """Silent spike: returns ``(c, V * (1 - c))`` with ``c = 0`` and surrogate gradients on ``mask``.

    Parameters
    ----------
    v
        Membrane ``[..., n]``; every masked neuron must have ``V <= theta``.
    theta
        Thresholds, broadcastable to ``v``.
    mask
        Bool, broadcastable to ``v``: the neurons that carry a silent spike.
    surrogate
        The surrogate derivative used backward.
    """
    c, v_new = _Silent.apply(v, theta, mask, surrogate)
    return c, v_new
