r"""Network description: populations of LIF neurons and the projections between them.

A :class:`Network` is a directed acyclic graph of populations (``docs/semantics.md``,
section 1). Population 0 is the input; the last population is the output (class
scores). Projections are :class:`Dense`, :class:`Conv2d`, :class:`AvgPool2d` or
:class:`SumPool2d`; shapes are reshaped implicitly (C order), so a ``(c, h, w)``
population feeds a :class:`Dense` layer as ``c*h*w`` flat neurons.

The LIF neuron of every non-input population follows, per timestep ``t`` and forward
step (rules R4.1-R4.6):

.. math::

    V \\leftarrow \\beta V \\quad\\text{(once per timestep)}, \\qquad
    V \\leftarrow V + I, \\qquad
    s = H(V - \\theta), \\qquad V \\leftarrow V (1 - s)

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> rng = np.random.default_rng(0)
>>> net = asyncsnn.Network.sequential(
...     input_shape=(64,),
...     layers=[asyncsnn.Dense(rng.normal(0, 0.3, (32, 64))),
...             asyncsnn.Dense(rng.normal(0, 0.3, (10, 32)))],
...     threshold=1.0, beta=0.9)
>>> net.population_shapes
[(64,), (32,), (10,)]
>>> net.n_outputs
10
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from asyncsnn.exceptions import EngineError, ModelError, invalid

if TYPE_CHECKING:
    from asyncsnn import _engine

__all__ = [
    "RESET_MODES",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Layer",
    "Network",
    "Population",
    "Projection",
    "SumPool2d",
    "beta_from_tau",
]

Shape = tuple[int, ...]
ParamLike = Union[float, npt.ArrayLike]

#: Largest population size, geometry value and neuron count: neuron ids and input
#: indices are u32 (R1.5, R2.2, R5.5).
MAX_SIZE = 2**32 - 2


def beta_from_tau(tau: float, dt: float = 1.0) -> float:
    """Per-timestep leak factor ``beta = exp(-dt / tau)``.

    Parameters
    ----------
    tau
        Membrane time constant, in the same unit as ``dt`` (> 0).
    dt
        Duration of one timestep (frame), same unit as ``tau`` (> 0).

    Returns
    -------
    float
        ``beta`` in (0, 1].

    Examples
    --------
    >>> round(beta_from_tau(10.0, 1.0), 4)
    0.9048
    """
    for name, v in (("tau", tau), ("dt", dt)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise invalid(ModelError, name, v, "must be a finite number > 0")
    return math.exp(-dt / tau)


def _from_tensor(value: Any, field: str, location: str) -> Any:
    """A torch tensor as numpy by the shared rule for tensors; anything else as it is.

    The rule is ``_prepare.tensor_checked``'s: bfloat16 converted exactly, sparse
    densified, meta and complex tensors refused (here with a ``ModelError``).
    """
    from asyncsnn._prepare import is_tensor, tensor_as_numpy  # (_prepare imports this module)

    return tensor_as_numpy(value, field, location, ModelError) if is_tensor(value) else value


def _weight_array(weight: npt.ArrayLike, ndim: int, location: str) -> np.ndarray:
    weight = _from_tensor(weight, "weight", location)
    try:
        arr = np.asarray(weight)
    except Exception as exc:
        raise invalid(ModelError, "weight", type(weight).__name__, f"not an array ({exc})", location) from exc
    if arr.dtype.kind not in "fiub":
        raise invalid(ModelError, "weight", f"dtype {arr.dtype}", "must be a real numeric array", location)
    if arr.ndim != ndim:
        raise invalid(ModelError, "weight", f"shape {arr.shape}", f"must have {ndim} dimensions", location)
    if arr.size == 0:
        raise invalid(ModelError, "weight", f"shape {arr.shape}", "must not be empty", location)
    with np.errstate(over="ignore", invalid="ignore"):
        # Always a copy: the caller's array stays theirs (writable), and changing it
        # later cannot change a network built from this layer.
        arr32 = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.all(np.isfinite(arr32)):
        bad = tuple(int(b) for b in np.argwhere(~np.isfinite(arr32))[0])
        raise invalid(
            ModelError,
            "weight",
            arr[bad].item(),
            f"must be finite (float32) at index {bad}",
            location,
        )
    arr32.setflags(write=False)
    return arr32


def _pair(value: int | Sequence[int], field: str, minimum: int, location: str) -> tuple[int, int]:
    if isinstance(value, (bool, np.bool_)):
        raise invalid(ModelError, field, value, "must be an int or a pair of ints", location)
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise invalid(ModelError, field, value, "must be an int or a pair of ints", location) from None
        if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            raise invalid(ModelError, field, value, "must be an int or a pair of ints", location)
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum or max(pair) > MAX_SIZE:
        raise invalid(ModelError, field, value, f"must be in [{minimum}, {MAX_SIZE}]", location)
    return pair


class _Immutable:
    """Attributes are set once, in ``__init__``; afterwards they cannot be replaced.

    Networks are validated once, when they are built; a layer, population or network
    whose weights or shapes changed afterwards would run unvalidated (and differently
    in each engine). Arrays are read-only copies for the same reason. Build a new object
    instead (``Dense(new_weights)``).
    """

    _sealed: bool = False

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: object) -> None:
        if self._sealed:
            raise FrozenInstanceError(
                f"cannot assign to field {name!r}: {type(self).__name__} is immutable after validation; "
                "build a new one instead"
            )
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if self._sealed:
            raise FrozenInstanceError(
                f"cannot delete field {name!r}: {type(self).__name__} is immutable after validation"
            )
        super().__delattr__(name)


class Dense(_Immutable):
    """Fully connected projection over the flattened source population.

    Parameters
    ----------
    weight
        Array ``[n_target, n_source]`` (float32 after conversion, finite). Source
        neuron ``j`` reaches target neuron ``q`` with weight ``weight[q, j]`` (R1.2).

    Examples
    --------
    >>> Dense(np.zeros((3, 5))).output_shape((5,))
    (3,)
    """

    kind = "dense"

    def __init__(self, weight: npt.ArrayLike) -> None:
        self.weight = _weight_array(weight, 2, "Dense")
        self._seal()

    def output_shape(self, source_shape: Shape, location: str = "Dense") -> Shape:
        """Shape of the target population for a source of shape ``source_shape``."""
        n_source = math.prod(source_shape)
        if self.weight.shape[1] != n_source:
            raise invalid(
                ModelError,
                "weight",
                f"shape {self.weight.shape}",
                f"expects {self.weight.shape[1]} source neurons but the source population "
                f"{source_shape} has {n_source}",
                location,
            )
        return (int(self.weight.shape[0]),)

    def __repr__(self) -> str:
        return f"Dense({self.weight.shape[1]} -> {self.weight.shape[0]})"


class Conv2d(_Immutable):
    """2-D convolution projection (zero padding, no dilation, no groups; R1.2).

    Parameters
    ----------
    weight
        Kernel ``[c_out, c_in, kh, kw]`` (float32 after conversion, finite).
    stride
        Stride ``s`` or ``(sh, sw)``, >= 1.
    padding
        Zero padding ``p`` or ``(ph, pw)``, >= 0.

    Examples
    --------
    >>> Conv2d(np.zeros((8, 2, 3, 3)), stride=2).output_shape((2, 34, 34))
    (8, 16, 16)
    """

    kind = "conv2d"

    def __init__(
        self,
        weight: npt.ArrayLike,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
    ) -> None:
        self.weight = _weight_array(weight, 4, "Conv2d")
        self.stride = _pair(stride, "stride", 1, "Conv2d")
        self.padding = _pair(padding, "padding", 0, "Conv2d")
        self._seal()

    def output_shape(self, source_shape: Shape, location: str = "Conv2d") -> Shape:
        """Shape ``(c_out, oh, ow)`` of the target for a ``(c_in, h, w)`` source."""
        c_out, c_in, kh, kw = (int(v) for v in self.weight.shape)
        if len(source_shape) != 3:
            raise invalid(
                ModelError, "source shape", source_shape, "a Conv2d source must have shape (c, h, w)", location
            )
        c, h, w = source_shape
        if c != c_in:
            raise invalid(
                ModelError,
                "weight",
                f"shape {self.weight.shape}",
                f"expects {c_in} input channels, source has {c}",
                location,
            )
        oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if h + 2 * self.padding[0] < kh or w + 2 * self.padding[1] < kw or oh < 1 or ow < 1:
            raise invalid(
                ModelError,
                "weight",
                f"shape {self.weight.shape}",
                f"kernel larger than the padded source {source_shape}",
                location,
            )
        return (c_out, oh, ow)

    def __repr__(self) -> str:
        c_out, c_in, kh, kw = self.weight.shape
        return f"Conv2d({c_in} -> {c_out}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding})"


class _Pool2d(_Immutable):
    kind = "pool"
    weight_name = ""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None) -> None:
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", 1, name)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1, name)
        self._seal()

    def output_shape(self, source_shape: Shape, location: str | None = None) -> Shape:
        """Shape ``(c, oh, ow)`` of the target for a ``(c, h, w)`` source."""
        location = location or type(self).__name__
        if len(source_shape) != 3:
            raise invalid(
                ModelError, "source shape", source_shape, "a pooling source must have shape (c, h, w)", location
            )
        c, h, w = source_shape
        kh, kw = self.kernel_size
        if h < kh or w < kw:
            raise invalid(
                ModelError, "kernel_size", self.kernel_size, f"larger than the source {source_shape}", location
            )
        return (c, (h - kh) // self.stride[0] + 1, (w - kw) // self.stride[1] + 1)

    @property
    def pool_weight(self) -> float:
        """The fixed weight of every pooling synapse (float32)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class AvgPool2d(_Pool2d):
    """Average pooling projection: fixed weight ``1/(kh*kw)`` in float32, no padding.

    Parameters
    ----------
    kernel_size
        ``k`` or ``(kh, kw)``, >= 1.
    stride
        ``s`` or ``(sh, sw)``; defaults to the kernel size.

    Examples
    --------
    >>> AvgPool2d(2).output_shape((4, 8, 8))
    (4, 4, 4)
    """

    kind = "avgpool2d"

    @property
    def pool_weight(self) -> float:
        """``1 / (kh * kw)`` rounded to float32."""
        return float(np.float32(1.0) / np.float32(self.kernel_size[0] * self.kernel_size[1]))


class SumPool2d(_Pool2d):
    """Sum pooling projection: fixed weight 1, no padding.

    Parameters
    ----------
    kernel_size
        ``k`` or ``(kh, kw)``, >= 1.
    stride
        ``s`` or ``(sh, sw)``; defaults to the kernel size.

    Examples
    --------
    >>> SumPool2d(2, stride=1).output_shape((1, 3, 3))
    (1, 2, 2)
    """

    kind = "sumpool2d"

    @property
    def pool_weight(self) -> float:
        """Always 1.0."""
        return 1.0


Layer = Union[Dense, Conv2d, AvgPool2d, SumPool2d]
_LAYER_TYPES = (Dense, Conv2d, AvgPool2d, SumPool2d)


def _param_array(value: ParamLike, shape: Shape, field: str, location: str) -> np.ndarray:
    """Convert a scalar or per-neuron LIF parameter to a float32 array of ``shape``."""
    value = _from_tensor(value, field, location)
    try:
        given = np.asarray(value)
        if given.dtype.kind not in "fiub":
            raise TypeError(f"dtype {given.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.asarray(given, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise invalid(ModelError, field, value, "must be a number or an array of numbers", location) from exc
    if arr.ndim == 0:
        arr = np.full(shape, arr, dtype=np.float32)
    elif arr.size == math.prod(shape) and arr.shape in (shape, (math.prod(shape),)):
        arr = np.array(arr.reshape(shape), dtype=np.float32, order="C", copy=True)  # never the caller's array
    else:
        raise invalid(
            ModelError,
            field,
            f"array of shape {arr.shape}",
            f"must be a scalar or have the population shape {shape}",
            location,
        )
    arr.setflags(write=False)
    return arr


#: The reset modes of R4.8, in the order of their engine codes (0 = ``"zero"``).
RESET_MODES: tuple[str, ...] = ("zero", "subtract", "subtract_delayed", "none")


def _check_lif(pop: Population, location: str) -> None:
    th, beta = pop.threshold, pop.beta
    if not np.all(np.isfinite(th)) or np.any(th <= 0):
        bad = th[~(np.isfinite(th) & (th > 0))]
        raise invalid(ModelError, "threshold", float(bad.flat[0]), "must be finite and > 0", location)
    if not np.all(np.isfinite(beta)) or np.any((beta < 0) | (beta > 1)):
        bad = beta[~(np.isfinite(beta) & (beta >= 0) & (beta <= 1))]
        raise invalid(ModelError, "beta", float(bad.flat[0]), "must be in [0, 1]", location)
    p = pop.refractory_dropout
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or not 0.0 <= p < 1.0:
        raise invalid(ModelError, "refractory_dropout", p, "must be a number in [0, 1)", location)
    bias = pop.bias
    assert bias is not None  # Population.create and _validated always set it
    if not np.all(np.isfinite(bias)):
        raise invalid(ModelError, "bias", float(bias[~np.isfinite(bias)].flat[0]), "must be finite", location)
    alpha = pop.alpha
    assert alpha is not None  # Population.create and _validated always set it
    if not np.all(np.isfinite(alpha)) or np.any((alpha < 0) | (alpha > 1)):
        bad = alpha[~(np.isfinite(alpha) & (alpha >= 0) & (alpha <= 1))]
        raise invalid(ModelError, "alpha", float(bad.flat[0]), "must be in [0, 1]", location)
    if not isinstance(pop.reset, str) or pop.reset not in RESET_MODES:
        raise invalid(ModelError, "reset", pop.reset, f"must be one of {', '.join(RESET_MODES)}", location)
    if p > 0 and pop.reset != "zero":
        raise invalid(
            ModelError,
            "refractory_dropout",
            p,
            f"refractory dropout needs reset 'zero' (R4.6), not {pop.reset!r}",
            location,
        )


@dataclass(frozen=True, eq=False)
class Population:
    """A population of LIF neurons (R1.4).

    Parameters
    ----------
    shape
        Shape of the population, e.g. ``(128,)`` or ``(8, 16, 16)``.
    threshold
        Firing threshold θ > 0: a scalar or an array of ``shape`` (float32).
    beta
        Per-timestep leak factor in [0, 1]: a scalar or an array of ``shape``.
    refractory_dropout
        Probability in [0, 1) that a spike leaves the neuron non-refractory (R4.6).
        Used in training; inference ignores it unless asked. Needs ``reset="zero"``.
    name
        Optional label used in summaries.
    bias
        Current added once per timestep when the population settles (R1.4, R4.7), in
        units of the membrane: a scalar or an array of ``shape`` (float32), default 0.
    reset
        What a spike does to the membrane (R4.8): ``"zero"`` (default), ``"subtract"``
        (``V -= threshold`` at once), ``"subtract_delayed"`` (snnTorch's default:
        the threshold is subtracted in the next timestep) or ``"none"``.
    alpha
        Per-timestep decay in [0, 1] of the synaptic current (R4.12), a scalar or an
        array of ``shape``, default 0 (no synaptic current: a LIF neuron). With
        ``alpha > 0`` the neuron is a current-based LIF (snnTorch's ``Synaptic``, NIR's
        ``CubaLIF``): a delivered current keeps reaching the membrane, decayed by
        ``alpha`` per timestep.
    """

    shape: Shape
    threshold: np.ndarray
    beta: np.ndarray
    refractory_dropout: float = 0.0
    name: str | None = None
    bias: np.ndarray | None = None  # None only before validation: engines see an array
    reset: str = "zero"
    alpha: np.ndarray | None = None  # None only before validation: engines see an array

    @classmethod
    def create(
        cls,
        shape: Sequence[int],
        threshold: ParamLike,
        beta: ParamLike,
        refractory_dropout: float = 0.0,
        name: str | None = None,
        location: str = "population",
        *,
        bias: ParamLike | None = None,
        reset: str = "zero",
        alpha: ParamLike | None = None,
    ) -> Population:
        """Validate and build a population (scalars are broadcast to ``shape``)."""
        shp = _shape(shape, "shape", location)
        pop = cls(
            shp,
            _param_array(threshold, shp, "threshold", location),
            _param_array(beta, shp, "beta", location),
            float(refractory_dropout)
            if isinstance(refractory_dropout, (int, float, np.floating)) and not isinstance(refractory_dropout, bool)
            else refractory_dropout,  # type: ignore[arg-type]
            name,
            _param_array(0.0 if bias is None else bias, shp, "bias", location),
            reset,
            _param_array(0.0 if alpha is None else alpha, shp, "alpha", location),
        )
        _check_lif(pop, location)
        return pop

    @property
    def size(self) -> int:
        """Number of neurons."""
        return math.prod(self.shape)

    @property
    def settling(self) -> bool:
        """Whether the population settles every timestep (R1.6).

        That is when it has a bias, a synaptic current (``alpha``) or a reset other than zero.
        """
        assert self.bias is not None
        assert self.alpha is not None
        return self.reset != "zero" or bool(np.any(self.bias != 0)) or self.synaptic

    @property
    def synaptic(self) -> bool:
        """Whether the neurons have a synaptic current (R4.12): ``alpha != 0`` for any."""
        assert self.alpha is not None
        return bool(np.any(self.alpha != 0))


def _owned_read_only(a: object, shape: Shape) -> bool:
    """Whether ``a`` is a float32 array of ``shape`` that nobody can change.

    That is: read-only and owning its data (a read-only view of a writable array could
    change through its base).
    """
    return (
        isinstance(a, np.ndarray)
        and a.dtype == np.float32
        and a.shape == shape
        and not a.flags.writeable
        and a.base is None
        and a.flags.owndata
    )


def _validated(pop: Population, location: str) -> Population:
    """``pop`` itself when it is already valid and normalised, else a validated copy."""
    shape = pop.shape
    if isinstance(shape, tuple) and all(
        _owned_read_only(a, shape) for a in (pop.threshold, pop.beta, pop.bias, pop.alpha)
    ):
        _shape(shape, "shape", location)
        _check_lif(pop, location)
        return pop
    return Population.create(
        shape,
        pop.threshold,
        pop.beta,
        pop.refractory_dropout,
        pop.name,
        location=location,
        bias=pop.bias,
        reset=pop.reset,
        alpha=pop.alpha,
    )


@dataclass(frozen=True)
class Projection:
    """A projection from population ``source`` to population ``target`` (0 = input).

    ``source < target`` is a forward projection; ``source >= target`` a recurrent one
    (self, lateral or backward, R1.2), whose current arrives as R4.9 says.
    """

    source: int
    target: int
    layer: Layer

    @property
    def recurrent(self) -> bool:
        """Whether this is a recurrent projection (``source >= target``, R1.2)."""
        return self.source >= self.target


def _shape(shape: Sequence[int] | int, field: str, location: str) -> Shape:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shp = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise invalid(ModelError, field, shape, "must be a tuple of positive ints", location) from None
    if not shp or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shp):
        raise invalid(ModelError, field, shape, "must be a non-empty tuple of positive ints", location)
    shp = tuple(int(s) for s in shp)
    if math.prod(shp) > MAX_SIZE:
        raise invalid(ModelError, field, shape, f"more than {MAX_SIZE} neurons (ids are u32, R1.5)", location)
    return shp


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _extra_projections(value: Any, *, recurrent: bool) -> list[Projection]:
    """The ``skips`` (forward) or ``recurrent`` projections of :meth:`Network.sequential`."""
    field, what = ("recurrent", "recurrent projection") if recurrent else ("skips", "skip")
    try:
        items = list(value)
    except TypeError:
        raise invalid(ModelError, field, value, "must be a sequence of (source, target, layer)", "network") from None
    projs = []
    for n, item in enumerate(items):
        where = f"{what.split()[0]} {n}"
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise invalid(ModelError, field, item, f"each {what} must be (source, target, layer)", where)
        source, target, layer = item
        if _is_int(source) and _is_int(target) and (source >= target) != recurrent:
            reason = (
                "a recurrent projection has source >= target (R1.2); give forward ones in skips="
                if recurrent
                else "a skip goes forward (source < target); give recurrent projections in recurrent="
            )
            raise invalid(ModelError, "source/target", (source, target), reason, where)
        projs.append(Projection(source, target, layer))
    return projs


def _per_layer(value: Any, n: int, field: str) -> list[Any]:
    """Expand a sequential-constructor parameter to one value per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise invalid(ModelError, field, value, f"a list must give one value per layer ({n} layers)")
        return list(value)
    return [value] * n


class Network(_Immutable):
    """A spiking network: populations of LIF neurons and projections (R1).

    Parameters
    ----------
    input_shape
        Shape of the input population (population 0), e.g. ``(64,)`` or ``(2, 34, 34)``.
    populations
        The non-input populations, in topological order; population ``i + 1`` is
        ``populations[i]``. The last one is the output population.
    projections
        Projections between populations: forward (``source < target``) or recurrent
        (``source >= target``, R1.2).

    Raises
    ------
    ModelError
        When shapes do not match, weights are not finite, LIF parameters are out of
        range, or refractory dropout is set where R4.6 refuses it; the error names the
        projection or population and the field.

    See Also
    --------
    Network.sequential : the common feed-forward case with shape inference.

    Examples
    --------
    A network with a skip connection from the input to the output:

    >>> w1, w2, ws = np.ones((8, 4)), np.ones((3, 8)), np.ones((3, 4))
    >>> net = Network(
    ...     input_shape=(4,),
    ...     populations=[Population.create((8,), 1.0, 0.9), Population.create((3,), 1.0, 0.9)],
    ...     projections=[Projection(0, 1, Dense(w1)), Projection(1, 2, Dense(w2)),
    ...                  Projection(0, 2, Dense(ws))])
    >>> net.n_neurons
    11
    """

    def __init__(
        self,
        input_shape: Sequence[int] | int,
        populations: Sequence[Population],
        projections: Sequence[Projection],
    ) -> None:
        self.input_shape: Shape = _shape(input_shape, "input_shape", "network")
        self.populations: tuple[Population, ...] = tuple(populations)
        self.projections: tuple[Projection, ...] = tuple(projections)
        if not self.populations:
            raise invalid(ModelError, "populations", [], "a network needs at least one non-input population", "network")
        for i, pop in enumerate(self.populations, start=1):
            if not isinstance(pop, Population):
                raise invalid(ModelError, "populations", type(pop).__name__, "must be a Population", f"population {i}")
        # A Population built directly (not with Population.create) is validated and
        # normalised here, so that every engine sees float32 arrays of the right shape.
        self.populations = tuple(_validated(pop, f"population {i}") for i, pop in enumerate(self.populations, 1))
        if self.n_neurons > MAX_SIZE:
            raise invalid(
                ModelError,
                "populations",
                self.n_neurons,
                f"more than {MAX_SIZE} neurons (ids are u32, R1.5)",
                "network",
            )
        shapes = self.population_shapes
        for n, proj in enumerate(self.projections):
            if not isinstance(proj, Projection) or not isinstance(proj.layer, _LAYER_TYPES):
                raise invalid(
                    ModelError,
                    "projections",
                    proj,
                    "must be a Projection of a Dense/Conv2d/AvgPool2d/SumPool2d",
                    f"projection {n}",
                )
            where = f"projection {n} ({type(proj.layer).__name__})"
            ends = (proj.source, proj.target)
            if not all(isinstance(e, (int, np.integer)) and not isinstance(e, (bool, np.bool_)) for e in ends):
                raise invalid(ModelError, "source/target", ends, "population indices must be ints", where)
            if proj.target == 0:
                reason = "the input (population 0) is never a target (R1.2)"
                raise invalid(ModelError, "source/target", (proj.source, proj.target), reason, where)
            if not 0 <= proj.source < len(shapes) or not 0 < proj.target < len(shapes):
                raise invalid(
                    ModelError, "source/target", (proj.source, proj.target), "population index out of range", where
                )
            produced = proj.layer.output_shape(shapes[proj.source], where)
            if math.prod(produced) != math.prod(shapes[proj.target]):
                raise invalid(
                    ModelError,
                    "target",
                    proj.target,
                    f"the projection produces {produced} ({math.prod(produced)} neurons) but population "
                    f"{proj.target} has shape {shapes[proj.target]}",
                    where,
                )
        #: Populations (1-based) that a recurrent projection targets (R1.2, R4.9).
        self._recurrent_targets: frozenset[int] = frozenset(p.target for p in self.projections if p.recurrent)
        for i in sorted(self._recurrent_targets):
            if self.populations[i - 1].refractory_dropout > 0:
                raise invalid(
                    ModelError,
                    "refractory_dropout",
                    self.populations[i - 1].refractory_dropout,
                    "refractory dropout is refused on the target of a recurrent projection (R4.6)",
                    f"population {i}",
                )
        #: Whether every population may take refractory dropout (R4.6): every reset is zero
        #: and no recurrent projection targets it. Kept here because the run-option cache
        #: of every ``infer`` call keys on it.
        self._dropout_allowed: bool = not self._recurrent_targets and all(
            pop.reset == "zero" for pop in self.populations
        )
        self._compiled: _engine.Network | None = None
        self._seal()

    @classmethod
    def sequential(
        cls,
        input_shape: Sequence[int] | int,
        layers: Sequence[Layer],
        *,
        threshold: ParamLike | Sequence[ParamLike] = 1.0,
        beta: ParamLike | Sequence[ParamLike] = 0.9,
        refractory_dropout: float | Sequence[float] = 0.0,
        skips: Sequence[tuple[int, int, Layer]] = (),
        bias: ParamLike | Sequence[ParamLike] = 0.0,
        reset: str | Sequence[str] = "zero",
        recurrent: Sequence[tuple[int, int, Layer]] = (),
        alpha: ParamLike | Sequence[ParamLike] = 0.0,
    ) -> Network:
        """Build a feed-forward network, one LIF population after each layer.

        Parameters
        ----------
        input_shape
            Shape of the input, e.g. ``(64,)`` or ``(2, 34, 34)``.
        layers
            Projections applied in order; each creates a population whose shape is
            inferred (``Dense`` gives ``(n,)``, ``Conv2d`` and pooling ``(c, h, w)``).
        threshold, beta
            LIF parameters: one scalar for all populations, or a list with one entry
            (scalar or per-neuron array) per layer.
        refractory_dropout
            One value, or one per layer, in [0, 1).
        bias
            Per-neuron bias (R1.4): one scalar for all populations, or a list with one
            entry (scalar or per-neuron array) per layer. Default 0.
        reset
            Reset mode (R4.8): one of :data:`RESET_MODES` for all populations, or one per
            layer. Default ``"zero"``.
        alpha
            Decay of the synaptic current (R4.12), in [0, 1]: one scalar for all
            populations, or a list with one entry per layer. Default 0 (LIF neurons).
        skips
            Extra forward projections ``(source, target, layer)`` by population index
            (0 = input, ``i`` = output of ``layers[i-1]``), ``source < target``.
        recurrent
            Recurrent projections ``(source, target, layer)`` with ``source >= target``
            (R1.2): ``(i, i, Dense(w))`` connects population ``i`` to itself, as
            snnTorch's ``RLeaky``. Their current arrives as R4.9 says.

        Returns
        -------
        Network

        Examples
        --------
        >>> net = Network.sequential(
        ...     input_shape=(2, 8, 8),
        ...     layers=[Conv2d(np.full((4, 2, 3, 3), 0.25), stride=1, padding=1),
        ...             SumPool2d(2), Dense(np.zeros((10, 64)))],
        ...     threshold=0.5, beta=[0.9, 1.0, 0.8])
        >>> net.population_shapes
        [(2, 8, 8), (4, 8, 8), (4, 4, 4), (10,)]
        """
        try:
            layers = list(layers)
        except TypeError:
            raise invalid(ModelError, "layers", layers, "must be a sequence of layers", "network") from None
        if not layers:
            raise invalid(ModelError, "layers", layers, "at least one layer is needed", "network")
        shape = _shape(input_shape, "input_shape", "network")
        thresholds = _per_layer(threshold, len(layers), "threshold")
        betas = _per_layer(beta, len(layers), "beta")
        dropouts = _per_layer(refractory_dropout, len(layers), "refractory_dropout")
        biases = _per_layer(bias, len(layers), "bias")
        alphas = _per_layer(alpha, len(layers), "alpha")
        resets = [reset] * len(layers) if isinstance(reset, str) else _per_layer(reset, len(layers), "reset")
        pops: list[Population] = []
        projs: list[Projection] = []
        for i, layer in enumerate(layers):
            where = f"layer {i} ({type(layer).__name__})"
            if not isinstance(layer, _LAYER_TYPES):
                raise invalid(
                    ModelError, "layers", type(layer).__name__, "must be Dense, Conv2d, AvgPool2d or SumPool2d", where
                )
            shape = layer.output_shape(shape, where)
            pops.append(
                Population.create(
                    shape,
                    thresholds[i],
                    betas[i],
                    dropouts[i],
                    location=where,
                    bias=biases[i],
                    reset=resets[i],
                    alpha=alphas[i],
                )
            )
            projs.append(Projection(i, i + 1, layer))
        projs += _extra_projections(skips, recurrent=False)
        projs += _extra_projections(recurrent, recurrent=True)
        return cls(input_shape, pops, projs)

    # ------------------------------------------------------------------ properties
    @property
    def population_shapes(self) -> list[Shape]:
        """Shapes of all populations, the input first."""
        return [self.input_shape] + [p.shape for p in self.populations]

    @property
    def population_sizes(self) -> list[int]:
        """Number of neurons of every population, the input first."""
        return [math.prod(s) for s in self.population_shapes]

    @property
    def spec_version(self) -> int:
        """The lowest ``SPEC_VERSION`` whose semantics run this network.

        1 unless a population settles (a bias, a synaptic current, a reset other than
        zero, or a recurrent projection into it, R1.6), 2 then.
        Model files record it, so a network without version-2 features still loads in
        an asyncsnn that knows only version 1.
        """
        return 2 if any(self.settling) else 1

    @property
    def settling(self) -> tuple[bool, ...]:
        """Whether each non-input population settles (R1.6), population 1 first.

        :attr:`Population.settling` (a bias, a synaptic current or a reset other than
        zero), or a recurrent
        projection targets it.
        """
        return tuple(p.settling or i in self._recurrent_targets for i, p in enumerate(self.populations, 1))

    @property
    def recurrent(self) -> bool:
        """Whether any projection is recurrent (R1.2)."""
        return bool(self._recurrent_targets)

    @property
    def input_size(self) -> int:
        """Number of input neurons."""
        return math.prod(self.input_shape)

    @property
    def n_neurons(self) -> int:
        """Number of non-input (LIF) neurons."""
        return sum(p.size for p in self.populations)

    @property
    def n_outputs(self) -> int:
        """Number of output neurons (classes)."""
        return self.populations[-1].size

    @property
    def n_synapses(self) -> int:
        """Number of synapses (R1.3) over all projections (counted, nothing per neuron is allocated)."""
        return sum(self._synapse_count(n) for n in range(len(self.projections)))

    def _axis_fan_outs(self, projection: int) -> tuple[int, list[int], list[int]]:
        """``(per_channel, rows, cols)`` of a conv/pool projection.

        The fan-out of source ``(c, y, x)`` is ``per_channel * rows[y] * cols[x]`` (R1.2, R1.3).
        """
        proj = self.projections[projection]
        layer = proj.layer
        src_shape = self.population_shapes[proj.source]
        _, h, w = src_shape
        if isinstance(layer, Conv2d):
            c_out, _, kh, kw = layer.weight.shape
            (sh, sw), (ph, pw) = layer.stride, layer.padding
        else:
            assert isinstance(layer, (AvgPool2d, SumPool2d))
            c_out = 1
            kh, kw = layer.kernel_size
            sh, sw = layer.stride
            ph = pw = 0
        _, oh, ow = layer.output_shape(src_shape)

        def counts(n: int, pad: int, kernel: int, stride: int, n_out: int) -> list[int]:
            # Target positions i with 0 <= y + pad - i*stride < kernel, 0 <= i < n_out.
            out = []
            for y in range(n):
                yp = y + pad
                hi = min(yp // stride, n_out - 1)
                lo = -(-(yp + 1 - kernel) // stride) if yp + 1 > kernel else 0
                out.append(max(0, hi - lo + 1))
            return out

        return int(c_out), counts(h, ph, kh, sh, oh), counts(w, pw, kw, sw, ow)

    def _synapse_count(self, projection: int) -> int:
        """Number of synapses of one projection, in closed form."""
        proj = self.projections[projection]
        if isinstance(proj.layer, Dense):
            return int(proj.layer.weight.shape[0]) * self.population_sizes[proj.source]
        per_channel, rows, cols = self._axis_fan_outs(projection)
        channels = self.population_shapes[proj.source][0]
        return channels * per_channel * sum(rows) * sum(cols)

    def fan_out_counts(self, projection: int) -> np.ndarray:
        """Fan-out of every source neuron of a projection (R1.3), shape ``[n_source]``.

        Raises
        ------
        EngineError
            When the array (8 bytes per source neuron) cannot be allocated.

        Examples
        --------
        >>> net = Network.sequential(input_shape=(1, 3, 3), layers=[Conv2d(np.ones((1, 1, 3, 3)), padding=1)])
        >>> net.fan_out_counts(0).reshape(3, 3).tolist()
        [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
        """
        proj = self.projections[projection]
        src_shape = self.population_shapes[proj.source]
        n_source = math.prod(src_shape)
        try:
            if isinstance(proj.layer, Dense):
                return np.full(n_source, proj.layer.weight.shape[0], dtype=np.int64)
            per_channel, rows, cols = self._axis_fan_outs(projection)
            per_pos = np.outer(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)) * per_channel
            return np.broadcast_to(per_pos, src_shape).reshape(-1)  # (a copy: not a view)
        except MemoryError:
            raise EngineError(
                f"projection {projection}: cannot allocate {8 * n_source} bytes for fan_out_counts",
                field="fan_out_counts",
                value=8 * n_source,
                location=f"projection {projection}",
            ) from None

    def outgoing(self, population: int) -> list[int]:
        """Indices of the projections whose source is ``population``."""
        return [n for n, p in enumerate(self.projections) if p.source == population]

    # ------------------------------------------------------------------ engine form
    def _engine_network(self) -> _engine.Network:
        """The validated Rust-side network, built once and cached."""
        if self._compiled is None:
            from asyncsnn._binding import build_engine_network

            object.__setattr__(self, "_compiled", build_engine_network(self))
        assert self._compiled is not None
        return self._compiled

    def summary(self) -> str:
        """A readable table of populations and projections."""
        lines = [
            f"Network: {len(self.populations)} LIF populations, {self.n_neurons} neurons, {self.n_synapses} synapses"
        ]
        lines.append(f"  pop 0  input   shape={self.input_shape}")
        for i, p in enumerate(self.populations, start=1):
            th = f"{float(p.threshold.flat[0]):.6g}" if np.all(p.threshold == p.threshold.flat[0]) else "per-neuron"
            be = f"{float(p.beta.flat[0]):.6g}" if np.all(p.beta == p.beta.flat[0]) else "per-neuron"
            role = "output" if i == len(self.populations) else "hidden"
            extra = ""
            if p.bias is not None and np.any(p.bias != 0):
                extra += " bias=" + (
                    f"{float(p.bias.flat[0]):.6g}" if np.all(p.bias == p.bias.flat[0]) else "per-neuron"
                )
            if p.reset != "zero":
                extra += f" reset={p.reset}"
            if p.synaptic:
                assert p.alpha is not None
                extra += " alpha=" + (
                    f"{float(p.alpha.flat[0]):.6g}" if np.all(p.alpha == p.alpha.flat[0]) else "per-neuron"
                )
            lines.append(
                f"  pop {i}  {role:6}  shape={p.shape} threshold={th} beta={be} dropout={p.refractory_dropout}{extra}"
            )
        for n, pr in enumerate(self.projections):
            rec = "  (recurrent, R4.9)" if pr.recurrent else ""
            lines.append(f"  proj {n}: {pr.source} -> {pr.target}  {pr.layer!r}{rec}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        shapes = " -> ".join(str(s) for s in self.population_shapes)
        return f"Network({shapes}, {len(self.projections)} projections)"
