"""Type stubs of the compiled Rust engine (``rust/python/mod.rs``)."""

from typing import Final, final

import numpy as np
import numpy.typing as npt

__all__ = ["SPEC_VERSION", "Network", "__version__", "axpy_roofline", "default_threads", "hash32", "run"]

SPEC_VERSION: Final[int]
__version__: Final[str]

@final
class Network:
    """A validated network held by the Rust engine."""

    def __new__(
        cls,
        input_size: int,
        populations: list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32], float]],
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
    sample_ids: npt.NDArray[np.uint64],
    scheduler: str,
    forward_group_size: int,
    stop: str,
    extra_steps: int,
    max_steps: int | None,
    seed: int,
    jitter: float,
    refractory_dropout: list[float] | None,
    threads: int | None,
) -> dict[str, npt.NDArray[np.int64]]: ...
def hash32(seed: int, sample: int, t: int, k: int, neuron: int, stream: int) -> int: ...
def default_threads() -> int: ...
def axpy_roofline(
    weights: npt.NDArray[np.float32], row_len: int, rows: npt.NDArray[np.uint32], repeats: int
) -> tuple[float, int, str]: ...
