"""Type stubs of the compiled Rust engine (``rust/python/mod.rs``)."""

from collections.abc import Sequence
from typing import Any, Final, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "COUNTERS",
    "SPEC_VERSION",
    "Network",
    "Tape",
    "__version__",
    "axpy_roofline",
    "default_threads",
    "deliver_backward",
    "deliver_forward",
    "hash32",
    "merge_pending",
    "record_outputs",
    "run",
    "select_pending",
    "silent_grad",
    "step_backward",
    "step_forward",
    "tape_grad",
    "tape_run",
]

SPEC_VERSION: Final[int]
#: The counters of docs/semantics.md section 7 as ``(name, per-sample axes)``, in the order
#: of ``run``'s result dict (``rust/counters.rs::COUNTERS``).
COUNTERS: Final[tuple[tuple[str, tuple[str, ...]], ...]]
__version__: Final[str]

@final
class Network:
    """A validated network held by the Rust engine."""

    def __new__(
        cls,
        input_size: int,
        populations: Sequence[
            tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32], float]
            | tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32], float, npt.NDArray[np.float32], int]
            | tuple[
                int,
                npt.NDArray[np.float32],
                npt.NDArray[np.float32],
                float,
                npt.NDArray[np.float32],
                int,
                npt.NDArray[np.float32],
            ]
        ],
        projections: list[tuple[str, int, int, npt.NDArray[np.float32], list[int]]],
    ) -> Network: ...
    @property
    def n_neurons(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def input_size(self) -> int: ...

def run(
    network: Network,
    dense: npt.NDArray[np.float32] | None,
    sparse: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.float32]]] | None,
    timesteps: int,
    labels: npt.NDArray[np.int64] | None,
    sample_ids: npt.NDArray[np.uint64] | None,
    scheduler: str,
    forward_group_size: int,
    stop: str,
    extra_steps: int,
    max_steps: int | None,
    seed: int,
    jitter: float,
    refractory_dropout: list[float] | None,
    threads: int | None,
    trace: bool = False,
    input_dropout: float = 0.0,
    spike_dropout: float = 0.0,
    prioritize_input: bool = True,
) -> dict[str, npt.NDArray[Any]]: ...
def hash32(seed: int, sample: int, t: int, k: int, neuron: int, stream: int) -> int: ...
def default_threads() -> int: ...
def axpy_roofline(
    weights: npt.NDArray[np.float32], row_len: int, rows: npt.NDArray[np.uint32], repeats: int
) -> tuple[float, int, str]: ...

# Kernels of the torch engine's CPU path (rust/python/train_kernels.rs).
def step_forward(
    v: npt.NDArray[np.float32],
    cur: npt.NDArray[np.float32],
    live: npt.NDArray[np.float32],
    q: npt.NDArray[np.float32],
    theta: npt.NDArray[np.float32],
    v_out: npt.NDArray[np.float32],
    q_out: npt.NDArray[np.float32],
    s_out: npt.NDArray[np.float32],
    live_out: npt.NDArray[np.float32],
    u_out: npt.NDArray[np.float32] | None = None,
    vpre: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32], bool]: ...
def step_backward(
    g_v: npt.NDArray[np.float32],
    g_q: npt.NDArray[np.float32],
    live: npt.NDArray[np.float32],
    fired: npt.NDArray[np.int64],
    u_f: npt.NDArray[np.float32],
    d_f: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def deliver_forward(
    q: npt.NDArray[np.float32],
    flat: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    local: npt.NDArray[np.int64],
    table: npt.NDArray[np.float32],
    col0: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def deliver_backward(
    g_cur: npt.NDArray[np.float32],
    g_col0: int,
    rows: npt.NDArray[np.int64],
    local: npt.NDArray[np.int64],
    mult: npt.NDArray[np.float32],
    table: npt.NDArray[np.float32],
    grad: npt.NDArray[np.float32],
    grad_row0: int,
    grad_col0: int,
) -> npt.NDArray[np.float32]: ...
def merge_pending(
    pend: npt.NDArray[np.int64], fired: npt.NDArray[np.int64], is_source: npt.NDArray[np.bool_], n_rows: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def select_pending(
    pend: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    f: int,
    n_neu: int,
    scheduler: str,
    seq: npt.NDArray[np.int64] | None = None,
    state: npt.NDArray[np.int64] | None = None,
    vpre: npt.NDArray[np.float32] | None = None,
    jitter: float = 0.0,
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]: ...
def record_outputs(
    counters: npt.NDArray[np.float64],
    columns: tuple[int, int, int, int, int, int],
    latency_open: npt.NDArray[np.float32],
    done: npt.NDArray[np.bool_],
    fired: npt.NDArray[np.int64],
    out_offset: int,
    delivered: npt.NDArray[np.float32],
    fanout: npt.NDArray[np.float64],
    k: int,
    latency: bool,
    live: npt.NDArray[np.float32] | None = None,
    spikes: npt.NDArray[np.float32] | None = None,
    labels: npt.NDArray[np.int64] | None = None,
) -> bool: ...
def silent_grad(
    g: npt.NDArray[np.float32],
    v: npt.NDArray[np.float32],
    live: npt.NDArray[np.float32],
    theta: npt.NDArray[np.float32],
    g_c: npt.NDArray[np.float32],
    col0: int,
    surrogate: str,
    p: float,
    q: float,
    reset: str,
    rows: npt.NDArray[np.int64] | None = None,
) -> None: ...

# The taped forward pass of an unlayered training batch and its backward (rust/python/tape.rs).
@final
class Tape:
    """The tapes of a batch's samples (events, settles, membranes and synaptic currents), kept for the backward pass."""

    def __len__(self) -> int: ...
    @property
    def events(self) -> list[int]: ...
    @property
    def nbytes(self) -> int: ...

def tape_run(
    network: Network,
    dense: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64] | None,
    sample_ids: npt.NDArray[np.uint64],
    scheduler: str,
    forward_group_size: int,
    stop: str,
    extra_steps: int,
    max_steps: int | None,
    seed: int,
    jitter: float,
    refractory_dropout: list[float] | None,
    input_dropout: float,
    spike_dropout: float,
    prioritize_input: bool,
    parallel: bool,
) -> tuple[dict[str, npt.NDArray[np.int64]], Tape]: ...
def tape_grad(
    tape: Tape,
    network: Network,
    g_counts: npt.NDArray[np.float32],
    surrogate: str,
    p: float,
    q: float,
    every_step: bool,
    parallel: bool,
) -> list[npt.NDArray[np.float32]]: ...
