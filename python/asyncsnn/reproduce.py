"""``asyncsnn reproduce``: the paper's comparison, end to end, on one dataset.

The same architecture is trained three ways (layered BPTT, unlayered with ``random``,
unlayered with ``momentum``; same forward group size, seed and epochs), every trained
model is evaluated with the Rust engine under ``layered``, ``random`` and ``momentum``
inference, with ``drain`` and with ``first_output``, and re-evaluated under ``random``
and ``momentum`` inference over a few forward group sizes (:data:`F_SWEEP`). The results
are written to ``<out>/<name>/``: ``table.md`` (a header with the provenance and every
setting, then the table), ``results.json`` (everything, with ``provenance`` and
``settings`` keys), ``results.csv``, the trained models (``*.safetensors``, their
training settings in the metadata: :func:`training_metadata`), and the PNG figures of
:mod:`asyncsnn.figures` with ``figures.md``. The closing paragraph and every figure's
caption state what the numbers show; they are computed from them, not written in advance.

:func:`run_reproduce_seeds` (``asyncsnn reproduce --seeds 0 1 2``) runs it once per seed,
each seed's complete output in ``<out>/<name>/seed_<seed>/``, then writes the mean,
standard deviation (ddof = 1), min and max over the seeds of every number to
``<out>/<name>/`` (:func:`aggregate_results`): ``results.json``, ``table.md`` (``mean ±
std``), ``results.csv``, the figures with error bars or bands, and a findings paragraph
that says on how many seeds each claim holds (:func:`findings_over_seeds`).

Training needs the ``train`` extra (torch, tqdm): without it :func:`run_reproduce`
raises :class:`~asyncsnn.exceptions.MissingDependencyError` before any work. The
figures need matplotlib (the ``data`` extra); without it the results are written all
the same and one line says that the figures were skipped.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsnn._prepare import Scheduler, StopMode
from asyncsnn.exceptions import InputError, MissingDependencyError, ParameterError, invalid
from asyncsnn.network import Network

if TYPE_CHECKING:
    from asyncsnn.result import InferenceResult

__all__ = [
    "DATASETS",
    "F_SWEEP",
    "TRAINING_METADATA_KEYS",
    "Dataset",
    "ReproduceConfig",
    "SeedsReport",
    "aggregate_results",
    "findings_over_seeds",
    "load_dataset",
    "report_from_dict",
    "require_train_extra",
    "run_reproduce",
    "run_reproduce_seeds",
    "training_metadata",
]

DATASETS = ("digits", "fashion-mnist", "fashion-mnist-events", "randman", "nmnist", "shd", "dvsgesture")
TRAINING = ("layered", "random", "momentum")
INFERENCE = ("layered", "random", "momentum")
STOPS = ("drain", "first_output")
EXTRA_STEPS_SWEEP = (0, 1, 2, 4, 8, 16, 32, 64)
#: Forward group sizes of the F sweep (the trained models re-evaluated, ``random`` and
#: ``momentum`` inference, drain); the run's own F is added when it is not among them.
F_SWEEP = (1, 2, 4, 8, 16, 32)
#: The training settings that :func:`training_metadata` records in a model file.
TRAINING_METADATA_KEYS = (
    "training",
    "dataset",
    "forward_group_size",
    "lr",
    "epochs",
    "batch_size",
    "hidden",
    "recurrent",
    "bias",
    "reset",
    "alpha",
    "surrogate_terms",
    "input_dropout",
    "spike_dropout",
    "prioritize_input",
    "loss",
    "beta",
    "threshold",
    "seed",
    "max_train",
    "max_test",
    "train_samples",
    "device",
    "flatten_input",
)
TRAIN_EXTRA = "pip install 'asyncsnn[train]'"


def require_train_extra(what: str) -> None:
    """Raise :class:`MissingDependencyError` unless the ``train`` extra (torch, tqdm) imports.

    Parameters
    ----------
    what
        What needs it, for the message (``"asyncsnn train"``, ``"run_reproduce"``).

    Raises
    ------
    MissingDependencyError
        One line naming the missing module and the extra to install (``field`` is the
        module's name).
    """
    for module in ("torch", "tqdm"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependencyError(
                f"{what} needs {module}, which cannot be imported ({exc}): install the training extra with "
                f"{TRAIN_EXTRA}",
                field=module,
                value=None,
            ) from exc


def _metadata_value(value: Any) -> str:
    """A setting as model-file metadata text: ``null``, ``true``/``false``, JSON lists, else ``str``."""
    if value is None or isinstance(value, (bool, list, tuple)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def training_metadata(**settings: Any) -> dict[str, str]:
    """The training settings of a model as model-file metadata (every value a string).

    ``asyncsnn train`` and ``asyncsnn reproduce`` save their models with these entries
    (:data:`TRAINING_METADATA_KEYS`: ``training`` is the training scheduler) and
    ``asyncsnn info`` prints them. Numbers are written as Python writes them
    (``0.003``), lists as JSON (``[64, 64]``), ``None`` as ``null``.

    Parameters
    ----------
    **settings
        Every key of :data:`TRAINING_METADATA_KEYS`, no other.

    Returns
    -------
    dict of str to str

    Raises
    ------
    ParameterError
        A missing or unknown key (``field`` names it).

    Examples
    --------
    >>> from asyncsnn.reproduce import TRAINING_METADATA_KEYS, training_metadata
    >>> values = dict.fromkeys(TRAINING_METADATA_KEYS, None)
    >>> meta = training_metadata(**{**values, "lr": 0.003, "hidden": (64, 64), "training": "momentum"})
    >>> meta["lr"], meta["hidden"], meta["training"], meta["max_train"]
    ('0.003', '[64, 64]', 'momentum', 'null')
    """
    for key in TRAINING_METADATA_KEYS:
        if key not in settings:
            raise invalid(ParameterError, key, None, "is a training setting that the metadata must record")
    for key in settings:
        if key not in TRAINING_METADATA_KEYS:
            raise invalid(ParameterError, key, settings[key], f"is not a training setting ({TRAINING_METADATA_KEYS})")
    return {key: _metadata_value(settings[key]) for key in TRAINING_METADATA_KEYS}


@dataclass
class Dataset:
    """An encoded dataset: frames ``[n, T, *input_shape]`` (float32 counts) and int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    n_classes: int
    description: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one frame."""
        return tuple(int(s) for s in self.train_x.shape[2:])


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[idx], y[idx]


def load_dataset(
    name: str,
    *,
    root: str | None = None,
    quick: bool = False,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """Load and encode one of :data:`DATASETS` as engine inputs.

    Parameters
    ----------
    name
        ``digits`` (embedded, rate code, T = 8), ``fashion-mnist`` (Debian's
        ``dataset-fashion-mnist``, rate code, T = 10), ``fashion-mnist-events``
        (Fashion-MNIST through the event-camera emulation, first saccade, 10 ms frames),
        ``randman`` (generated, purely temporal), ``nmnist``, ``shd``, ``dvsgesture``
        (tonic, files under ``root``).
    root
        Folder of the data files (for Fashion-MNIST and the tonic datasets).
    quick
        Use a small subset (for smoke tests).
    seed
        Seed of the encoders and of the subset draws.
    max_train, max_test
        Optional caps on the number of samples.

    Returns
    -------
    Dataset
    """
    from asyncsnn import data

    if quick:
        max_train = min(max_train or 10**9, 256)
        max_test = min(max_test or 10**9, 128)
    if name == "digits":
        tr_i, tr_y, te_i, te_y = data.digits_split()
        tr_x = data.encode(tr_i, "rate", timesteps=8, seed=seed)
        te_x = data.encode(te_i, "rate", timesteps=8, seed=seed + 1)
        desc = "UCI 8x8 digits (embedded), rate code, T = 8 frames"
        n_classes = 10
    elif name in ("fashion-mnist", "fashion-mnist-events"):
        from asyncsnn.data.fashion_mnist import fashion_mnist_frames, load_fashion_mnist

        tr_i, tr_y = load_fashion_mnist(root, train=True)
        te_i, te_y = load_fashion_mnist(root, train=False)
        tr_i, tr_y = _subset(tr_i, tr_y, max_train, seed)
        te_i, te_y = _subset(te_i, te_y, max_test, seed + 1)
        if name == "fashion-mnist":
            tr_x = fashion_mnist_frames(tr_i, timesteps=10, seed=seed, pad_to=None)
            te_x = fashion_mnist_frames(te_i, timesteps=10, seed=seed + 1, pad_to=None)
            desc = "Fashion-MNIST (Debian dataset-fashion-mnist), rate code, T = 10 frames"
        else:
            from asyncsnn.data.saccades import emulate_saccades, saccade_frames

            tr_x = saccade_frames(emulate_saccades(tr_i, seed=seed), n_frames=10)
            te_x = saccade_frames(emulate_saccades(te_i, seed=seed + 1), n_frames=10)
            desc = (
                "Fashion-MNIST through the saccade event-camera emulation, first saccade, 10 ms frames [10, 2, 34, 34]"
            )
        n_classes = 10
    elif name == "randman":
        from asyncsnn.data.randman import make_randman

        x, y = make_randman(n_classes=10, n_units=50, n_samples=120 if not quick else 40, timesteps=25, seed=seed)
        n_test = len(y) // 5
        tr_x, tr_y, te_x, te_y = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
        desc = "Randman (10 classes, 50 units, 1-D manifolds, one spike per unit), T = 25 frames"
        n_classes = 10
    elif name in ("nmnist", "shd", "dvsgesture"):
        from asyncsnn.data import tonic_datasets as td

        if root is None:
            raise invalid(ParameterError, "root", None, f"the {name} dataset needs --root (its tonic folder)")
        loaders: dict[str, Callable[..., Any]] = {
            "nmnist": td.load_nmnist,
            "shd": td.load_shd,
            "dvsgesture": td.load_dvsgesture,
        }
        loader = loaders[name]
        train_set, test_set = loader(root, train=True), loader(root, train=False)
        tr_x, tr_y = _frames_of(train_set, max_train, seed)
        te_x, te_y = _frames_of(test_set, max_test, seed + 1)
        t = max(tr_x.shape[1], te_x.shape[1])
        tr_x, te_x = _pad_t(tr_x, t), _pad_t(te_x, t)
        desc = f"{name} through tonic ({train_set!r})"
        n_classes = int(max(tr_y.max(), te_y.max())) + 1
    else:
        raise invalid(ParameterError, "dataset", name, f"must be one of {list(DATASETS)}")
    tr_x, tr_y = _subset(tr_x, tr_y, max_train, seed)
    te_x, te_y = _subset(te_x, te_y, max_test, seed + 1)
    return Dataset(
        name,
        tr_x.astype(np.float32),
        tr_y.astype(np.int64),
        te_x.astype(np.float32),
        te_y.astype(np.int64),
        n_classes,
        desc,
    )


def _frames_of(dataset: Any, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[n, T, *shape]`` and labels of a tonic ``EventFrames`` (a seeded subset when capped)."""
    n = len(dataset)
    idx = np.arange(n) if limit is None or limit >= n else np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    frames, labels = dataset.to_arrays(idx)
    return np.asarray(frames, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def _pad_t(x: np.ndarray, t: int) -> np.ndarray:
    if x.shape[1] >= t:
        return x
    pad = np.zeros((x.shape[0], t - x.shape[1], *x.shape[2:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=1)


@dataclass
class ReproduceConfig:
    """Options of :func:`run_reproduce` (the CLI's flags)."""

    dataset: str = "digits"
    root: str | None = None
    forward_group_size: int = 8
    epochs: int | None = None
    seed: int = 0
    out: str = "results"
    quick: bool = False
    hidden: tuple[int, ...] = (64, 64)
    #: Give every hidden population a recurrent projection to itself (R4.9,
    #: :meth:`asyncsnn.torch.AsyncSNN.from_sizes`).
    recurrent: bool = False
    lr: float = 3e-3
    batch_size: int = 32
    loss: str = "count"
    threshold: float = 1.0
    beta: float = 0.9
    max_train: int | None = None
    max_test: int | None = None
    progress: bool = True
    name: str | None = None
    device: str = "auto"

    def resolved_epochs(self) -> int:
        """Epochs to train (default depends on the dataset and ``quick``)."""
        if self.epochs is not None:
            return self.epochs
        if self.quick:
            return 1
        return {"digits": 8, "randman": 30}.get(self.dataset, 3)


@dataclass
class Cell:
    """The evaluation of one trained model under one inference setting."""

    training: str
    inference: str
    stop: str
    accuracy: float
    spikes_per_sample: float
    synops_per_sample: float
    forward_steps_per_sample: float
    steps_to_first_output: float
    spikes_to_first_output: float
    synops_to_first_output: float
    accuracy_at_first_output: float
    silent_fraction: float
    dropped_spikes_per_sample: float
    #: Decision latency (:mod:`asyncsnn.latency`, ``docs/guide.md`` "Decision latency"):
    #: means over the samples that have it (NaN: none has).
    steps_to_correct: float = math.nan
    spikes_to_correct: float = math.nan
    synops_to_correct: float = math.nan
    steps_to_decision: float = math.nan
    spikes_to_decision: float = math.nan
    synops_to_decision: float = math.nan
    #: The same under layered inference of the same model and stop mode over this cell's
    #: (:func:`asyncsnn.latency.compare_layered`, paired means): above 1, this cell decides sooner.
    vs_layered_steps_to_correct: float = math.nan
    vs_layered_spikes_to_correct: float = math.nan
    vs_layered_synops_to_correct: float = math.nan
    vs_layered_steps_to_decision: float = math.nan
    vs_layered_spikes_to_decision: float = math.nan
    vs_layered_synops_to_decision: float = math.nan
    #: Per shipped hardware profile (``asyncsnn.cost.PROFILES``): the means of :data:`COST_KEYS`
    #: (None where the profile has no figure or no sample has the quantity).
    cost: dict[str, dict[str, float | None]] = field(default_factory=dict)


#: The cost columns of ``results.csv``, per profile: ``<key>_<profile>``; the means of the
#: :class:`asyncsnn.cost.CostReport` quantities of the same names (``docs/cost.md``): time to the
#: first output spike within a timestep, and time and energy from the start of the sample to
#: the first correct output spike and to the stable decision.
COST_KEYS = (
    "energy_per_inference_j",
    "time_per_inference_s",
    "time_to_first_output_s",
    "time_to_correct_s",
    "time_to_decision_s",
    "energy_to_correct_j",
    "energy_to_decision_j",
)


@dataclass
class Report:
    """Everything a run produced (``results.json``)."""

    config: dict[str, Any]
    dataset: str
    description: str
    n_train: int
    n_test: int
    input_shape: list[int]
    architecture: list[int]
    history: dict[str, dict[str, list[Any]]]
    cells: list[Cell]
    sweep: dict[str, dict[str, list[float]]]
    spikes_per_neuron: dict[str, list[float]]
    currents_to_spike: dict[str, list[int]]
    findings: str
    wall_time_s: float
    files: list[str] = field(default_factory=list)
    #: The hardware profiles that priced the cells (``HardwareProfile.as_dict``), by name.
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where the numbers came from: :func:`asyncsnn._provenance.provenance` (version, commit,
    #: SPEC_VERSION, python, numpy, torch, platform).
    provenance: dict[str, str] = field(default_factory=dict)
    #: Every training and evaluation setting of the run (:func:`run_settings`).
    settings: dict[str, Any] = field(default_factory=dict)
    #: The F sweep: one row per training x inference (``random``, ``momentum``) x F, drain:
    #: ``training``, ``inference``, ``forward_group_size``, ``accuracy``,
    #: ``spikes_per_sample``, ``synops_per_sample``, ``steps_to_first_output`` (None: no output spike),
    #: and the decision latency with its ratios to layered inference (:func:`sweep_forward_group_sizes`).
    f_sweep: list[dict[str, Any]] = field(default_factory=list)
    #: The caption of every figure drawn (file name to caption, :func:`asyncsnn.figures.captions`).
    figures: dict[str, str] = field(default_factory=dict)


def _nanmean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def evaluate_cell(
    net: Network, x: np.ndarray, y: np.ndarray, training: str, inference: str, stop: str, f: int, seed: int
) -> Cell:
    """Evaluate ``net`` with the Rust engine under one inference setting.

    The cell's ``cost`` prices the run on every shipped profile (:data:`asyncsnn.cost.PROFILES`),
    layer-synchronous for ``layered`` inference and asynchronous otherwise (``docs/cost.md``).
    Its decision latency is compared with ``net`` on ``x`` under ``layered`` inference
    with the same stop mode (:func:`asyncsnn.latency.compare_layered`).
    """
    import asyncsnn
    from asyncsnn.cost import PROFILES, estimate
    from asyncsnn.latency import compare_layered, decision_latency

    def run(scheduler: str) -> InferenceResult:
        return asyncsnn.infer(
            net, x, scheduler=Scheduler(scheduler), forward_group_size=f, stop=StopMode(stop), seed=seed, labels=y
        )

    res = run(inference)
    layered = res if inference == "layered" else run("layered")
    latency = decision_latency(res).means()
    ratios = {f"vs_layered_{k}": v for k, v in compare_layered(res, layered).items()}
    cost = {}
    for name, profile in PROFILES.items():
        report = estimate(res, net, profile, scheduler=Scheduler(inference))
        cost[name] = {key: _none_if_nan(getattr(report, f"mean_{key[:-2]}")) for key in COST_KEYS}
    has = res.first_output_step >= 0  # the timesteps that mean_steps_to_first_output averages over
    return Cell(
        training=training,
        inference=inference,
        stop=stop,
        accuracy=float(res.accuracy or 0.0),
        spikes_per_sample=float(res.spikes_total.mean()),
        synops_per_sample=float(res.synops.mean()),
        forward_steps_per_sample=float(res.forward_steps.mean()),
        steps_to_first_output=res.mean_steps_to_first_output,
        spikes_to_first_output=_nanmean(res.first_output_spikes[has].astype(float)),
        synops_to_first_output=_nanmean(res.first_output_synops[has].astype(float)),
        accuracy_at_first_output=float(np.mean(res.decision_class == y)),
        silent_fraction=float(np.mean(res.predictions < 0)),
        dropped_spikes_per_sample=float(res.dropped_spikes.mean()),
        **latency,
        **ratios,
        cost=cost,
    )


def _pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else float("nan")


def findings_paragraph(cells: Sequence[Cell], f: int) -> str:
    """One paragraph stating what the numbers show (computed, never pre-written)."""
    by = {(c.training, c.inference, c.stop): c for c in cells}
    parts = []
    for inf in ("momentum", "random"):
        base = by.get(("layered", inf, "drain"))
        same = by.get((inf, inf, "drain"))
        if base is None or same is None:
            continue
        spikes = _pct(same.spikes_per_sample, base.spikes_per_sample)
        acc = 100.0 * (same.accuracy - base.accuracy)
        steps = base.steps_to_first_output / same.steps_to_first_output if same.steps_to_first_output else float("nan")
        parts.append(
            f"Under {inf} inference (F = {f}), the model trained with unlayered/{inf} used "
            f"{abs(spikes):.0f} % {'fewer' if spikes < 0 else 'more'} spikes per sample than the layered-trained "
            f"model ({same.spikes_per_sample:.0f} vs {base.spikes_per_sample:.0f}), at "
            f"{acc:+.1f} points of accuracy ({100 * same.accuracy:.1f} % vs {100 * base.accuracy:.1f} %), and "
            f"reached its first output spike of a timestep after {same.steps_to_first_output:.1f} forward steps vs "
            f"{base.steps_to_first_output:.1f} ({steps:.2f}x)."
        )
    for inf in ("momentum", "random"):
        cell = by.get((inf, inf, "drain"))
        if cell is not None and not math.isnan(cell.steps_to_decision):
            parts.append(decision_sentence(cell))

    lay = by.get(("layered", "layered", "drain"))
    lay_async = [by[k] for k in (("layered", "random", "drain"), ("layered", "momentum", "drain")) if k in by]
    if lay is not None and lay_async:
        worst = min(lay_async, key=lambda c: c.accuracy)
        parts.append(
            f"The layered-trained model lost {100 * (lay.accuracy - worst.accuracy):.1f} points when run "
            f"asynchronously ({worst.inference} inference: {100 * worst.accuracy:.1f} % vs {100 * lay.accuracy:.1f} % "
            "layer-synchronous)."
        )
    early = [by[(t, t, "first_output")] for t in ("random", "momentum") if (t, t, "first_output") in by]
    for c in early:
        full = by[(c.training, c.inference, "drain")]
        parts.append(
            f"Stopping each timestep at the first output spike, unlayered/{c.training} kept "
            f"{100 * c.accuracy:.1f} % accuracy (drained: {100 * full.accuracy:.1f} %) with "
            f"{abs(_pct(c.synops_per_sample, full.synops_per_sample)):.0f} % fewer synaptic operations."
        )
    return " ".join(parts) if parts else "Not enough cells to compare."


def decision_sentence(cell: Cell) -> str:
    """The decision-latency comparison of one cell with layered inference, as a sentence.

    Ratios are layered / this cell (``docs/guide.md``, "Decision latency"): above 1, the
    asynchronous run decides with fewer forward steps or synaptic operations.
    """

    def ratio(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.2f}x"

    return (
        f"Against layered inference of the same model, unlayered/{cell.training} under {cell.inference} reached "
        f"its stable decision after {cell.steps_to_decision:.1f} forward steps and {cell.synops_to_decision:.0f} "
        f"synaptic operations per sample (layered/async: {ratio(cell.vs_layered_steps_to_decision)} steps, "
        f"{ratio(cell.vs_layered_synops_to_decision)} synops), and its first correct output spike after "
        f"{cell.steps_to_correct:.1f} steps ({ratio(cell.vs_layered_steps_to_correct)} steps, "
        f"{ratio(cell.vs_layered_synops_to_correct)} synops)."
    )


def _cost_names(cells: Sequence[Cell]) -> list[str]:
    """The profiles that priced the cells, in order of first appearance."""
    return list(dict.fromkeys(name for c in cells for name in c.cost))


def run_settings(config: ReproduceConfig, ds: Dataset, *, epochs: int, device: str) -> dict[str, Any]:
    """Every training and evaluation setting of a run, as ``results.json`` and ``table.md`` record them.

    Parameters
    ----------
    config
        The run's options.
    ds
        The loaded dataset (its name, description and sizes).
    epochs
        The epochs trained (:meth:`ReproduceConfig.resolved_epochs`).
    device
        The torch device the training ran on (resolved: ``cpu``, ``cuda:0``).

    Returns
    -------
    dict
        JSON-safe values: the dataset and its subset sizes (``max_train`` / ``max_test``
        are the caps applied, ``--quick`` included; ``n_train`` / ``n_test`` the samples
        used), the architecture and neuron parameters, the training options, the
        schedulers and stop modes, the sweeps, and the engine and profiles of the evaluation.
    """
    from asyncsnn.cost import PROFILES

    cap_train = min(config.max_train or 256, 256) if config.quick else config.max_train
    cap_test = min(config.max_test or 128, 128) if config.quick else config.max_test
    f_values = sorted({*F_SWEEP, config.forward_group_size})
    return {
        "dataset": ds.name,
        "dataset_description": ds.description,
        "root": config.root,
        "quick": config.quick,
        "max_train": cap_train,
        "max_test": cap_test,
        "n_train": len(ds.train_y),
        "n_test": len(ds.test_y),
        "input_shape": list(ds.input_shape),
        "architecture": [math.prod(ds.input_shape), *config.hidden, ds.n_classes],
        "hidden": list(config.hidden),
        "recurrent": config.recurrent,
        "threshold": config.threshold,
        "beta": config.beta,
        "forward_group_size": config.forward_group_size,
        "lr": config.lr,
        "epochs": epochs,
        "batch_size": config.batch_size,
        "loss": config.loss,
        "seed": config.seed,
        "device": device,
        "training_schedulers": list(TRAINING),
        "inference_schedulers": list(INFERENCE),
        "stops": list(STOPS),
        "evaluation_engine": "rust",
        "anytime_scheduler": "momentum",
        "extra_steps_sweep": list(EXTRA_STEPS_SWEEP),
        "f_sweep": f_values,
        "f_sweep_schedulers": ["random", "momentum"],
        "profiles": list(PROFILES),
    }


def _setting_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


#: How ``table.md`` groups the settings (a setting in no group is listed under "other").
_SETTING_GROUPS = {
    "data": ("dataset", "dataset_description", "root", "quick", "max_train", "max_test", "n_train", "n_test"),
    "network": ("input_shape", "architecture", "hidden", "threshold", "beta"),
    "training": (
        "training_schedulers",
        "forward_group_size",
        "epochs",
        "lr",
        "batch_size",
        "loss",
        "seed",
        "seeds",
        "device",
    ),
    "evaluation": (
        "evaluation_engine",
        "inference_schedulers",
        "stops",
        "anytime_scheduler",
        "extra_steps_sweep",
        "f_sweep",
        "f_sweep_schedulers",
        "profiles",
    ),
}


def table_header(report: Report | Mapping[str, Any]) -> str:
    """The header of ``table.md``: what was run, every setting (grouped) and the provenance.

    ``report`` is a :class:`Report` or a ``results.json`` mapping; an aggregate over
    seeds (``seeds`` holds two or more) says so in its title and first line.
    """
    data: Mapping[str, Any] = asdict(report) if isinstance(report, Report) else report
    settings = dict(data.get("settings") or {})
    seeds = list(data.get("seeds") or [])
    title = f"# asyncsnn reproduce: {data['dataset']}"
    lines = [title + (f", {len(seeds)} seeds" if len(seeds) > 1 else ""), ""]
    if len(seeds) > 1:
        lines += [
            f"Every number is the mean ± standard deviation (ddof = 1) over {len(seeds)} seeds "
            f"({', '.join(map(str, seeds))}); each seed's own results are in seed_<seed>/.",
            "",
        ]
    lines += [
        f"{data['description']}; {data['n_train']} train / {data['n_test']} test samples; architecture "
        f"{' -> '.join(map(str, data['architecture']))}.",
        "",
    ]
    for group, keys in [*_SETTING_GROUPS.items(), ("other", tuple(settings))]:
        items = [f"{k} = {_setting_text(settings.pop(k))}" for k in keys if k in settings]
        if items:
            lines.append(f"- {group}: " + ", ".join(items))
    lines.append("- provenance: " + ", ".join(f"{k} = {v}" for k, v in (data.get("provenance") or {}).items()))
    return "\n".join(lines) + "\n\n"


def sweep_forward_group_sizes(
    nets: dict[str, Network], x: np.ndarray, y: np.ndarray, sizes: Sequence[int], seed: int
) -> list[dict[str, Any]]:
    """Evaluate every trained model under ``random`` and ``momentum`` inference for each F (drain).

    Returns
    -------
    list of dict
        One row per training x inference x F: ``training``, ``inference``,
        ``forward_group_size``, ``accuracy``, ``spikes_per_sample``, ``synops_per_sample``,
        ``steps_to_first_output``, and the decision latency ``steps_to_decision``,
        ``synops_to_decision``, ``synops_to_correct`` with the ratios of the same model
        under ``layered`` inference over them, ``vs_layered_steps_to_decision``,
        ``vs_layered_synops_to_decision``, ``vs_layered_synops_to_correct``
        (:mod:`asyncsnn.latency`; None where undefined).
    """
    import asyncsnn
    from asyncsnn.latency import compare_layered, decision_latency

    rows = []
    for training, net in nets.items():
        layered = asyncsnn.infer(net, x, scheduler="layered", seed=seed, labels=y)
        for inference in ("random", "momentum"):
            for f in sizes:
                res = asyncsnn.infer(net, x, scheduler=inference, forward_group_size=f, seed=seed, labels=y)
                latency = decision_latency(res).means()
                ratios = compare_layered(res, layered)
                rows.append(
                    {
                        "training": training,
                        "inference": inference,
                        "forward_group_size": int(f),
                        "accuracy": float(res.accuracy or 0.0),
                        "spikes_per_sample": float(res.spikes_total.mean()),
                        "synops_per_sample": float(res.synops.mean()),
                        "steps_to_first_output": _none_if_nan(res.mean_steps_to_first_output),
                        **{k: _none_if_nan(latency[k]) for k in _SWEEP_LATENCY},
                        **{f"vs_layered_{k}": _none_if_nan(ratios[k]) for k in _SWEEP_LATENCY},
                    }
                )
    return rows


#: The decision-latency quantities of an F-sweep row (each also as ``vs_layered_<name>``).
_SWEEP_LATENCY = ("steps_to_decision", "synops_to_decision", "synops_to_correct")


#: The numeric columns of ``table.md`` before the cost columns: (title, cell field, format,
#: scale, unit). One seed writes ``format(value * scale) + unit``, several ``mean ± std``.
_TABLE_COLUMNS: tuple[tuple[str, str, str, float, str], ...] = (
    ("accuracy", "accuracy", ".1f", 100.0, " %"),
    ("spikes/sample", "spikes_per_sample", ".0f", 1.0, ""),
    ("synops/sample", "synops_per_sample", ".0f", 1.0, ""),
    ("fwd steps/sample", "forward_steps_per_sample", ".1f", 1.0, ""),
    ("steps to 1st output", "steps_to_first_output", ".2f", 1.0, ""),
    ("spikes to 1st output", "spikes_to_first_output", ".1f", 1.0, ""),
    ("acc. at 1st output", "accuracy_at_first_output", ".1f", 100.0, " %"),
    ("steps to correct", "steps_to_correct", ".1f", 1.0, ""),
    ("steps to decision", "steps_to_decision", ".1f", 1.0, ""),
    ("synops to decision", "synops_to_decision", ".0f", 1.0, ""),
    ("layered/async steps to dec.", "vs_layered_steps_to_decision", ".2f", 1.0, "x"),
    ("layered/async synops to dec.", "vs_layered_synops_to_decision", ".2f", 1.0, "x"),
    ("silent", "silent_fraction", ".1f", 100.0, " %"),
)


def _cost_names_of(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """The profiles that priced the cells, in order of first appearance."""
    return list(dict.fromkeys(name for c in cells for name in c.get("cost", {})))


def _table_text(cells: Sequence[Mapping[str, Any]]) -> str:
    """The table of ``table.md`` (column names and one row per cell) from ``results.json`` cells.

    A cell's numbers are plain (one seed) or stats over seeds (:func:`asyncsnn._spread.stat`),
    written as ``mean ± std``.
    """
    from asyncsnn._spread import fmt, mean

    names = _cost_names_of(cells)
    # Energy per inference for every profile; time to decision where the profile has a time model.
    timed = [
        n
        for n in names
        if any(not math.isnan(mean(c.get("cost", {}).get(n, {}).get("time_to_decision_s"))) for c in cells)
    ]
    extra = "".join(f" energy/inf. {n} (µJ) |" for n in names) + "".join(f" time to decision {n} (µs) |" for n in timed)
    titles = "".join(f" {title} |" for title, *_ in _TABLE_COLUMNS)
    head = (
        f"| training | inference | stop |{titles}{extra}\n"
        f"|---|---|---|{'---|' * len(_TABLE_COLUMNS)}{'---|' * (len(names) + len(timed))}\n"
    )

    def row(c: Mapping[str, Any]) -> str:
        values = "".join(
            f" {fmt(c[key], spec, scale=scale, unit=unit, missing='nan')} |"
            for _, key, spec, scale, unit in _TABLE_COLUMNS
        )
        cost = c.get("cost", {})
        values += "".join(f" {fmt(cost.get(n, {}).get('energy_per_inference_j'), '.4g', scale=1e6)} |" for n in names)
        values += "".join(f" {fmt(cost.get(n, {}).get('time_to_decision_s'), '.4g', scale=1e6)} |" for n in timed)
        return f"| {c['training']} | {c['inference']} | {c['stop']} |{values}\n"

    return head + "".join(row(c) for c in cells)


def _write_table(path: Path, cells: Sequence[Cell], header: str = "") -> str:
    text = header + _table_text([asdict(c) for c in cells])
    path.write_text(text)
    return text


def _write_csv(path: Path, cells: Sequence[Cell]) -> None:
    """``results.csv``: the cell's fields, then ``<cost key>_<profile>`` per profile (empty: no figure)."""
    names = _cost_names(cells)
    base = [k for k in asdict(cells[0]) if k != "cost"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=base + [f"{key}_{n}" for n in names for key in COST_KEYS])
        writer.writeheader()
        for c in cells:
            values: dict[str, Any] = {k: v for k, v in asdict(c).items() if k != "cost"}
            for n in names:
                for key in COST_KEYS:
                    values[f"{key}_{n}"] = c.cost.get(n, {}).get(key)
            writer.writerow(values)


@dataclass
class _Prepared:
    """A run's data and resolved settings, before any training."""

    ds: Dataset
    device: str
    epochs: int
    settings: dict[str, Any]


def _prepare(config: ReproduceConfig) -> _Prepared:
    """Check the options, resolve the device and load the dataset of ``config.seed``."""
    from asyncsnn.torch.training import resolve_device

    if config.forward_group_size < 1:
        raise invalid(ParameterError, "forward_group_size", config.forward_group_size, "must be >= 1")
    device = str(resolve_device(config.device))  # a bad device fails before the data is loaded
    ds = load_dataset(
        config.dataset,
        root=config.root,
        quick=config.quick,
        seed=config.seed,
        max_train=config.max_train,
        max_test=config.max_test,
    )
    epochs = config.resolved_epochs()
    return _Prepared(ds, device, epochs, run_settings(config, ds, epochs=epochs, device=device))


def _folder_name(config: ReproduceConfig) -> str:
    return config.name or (
        config.dataset + ("-recurrent" if config.recurrent else "") + ("-quick" if config.quick else "")
    )


def run_reproduce(config: ReproduceConfig, log: Callable[[str], None] = print) -> Report:
    """Train three ways, evaluate every combination, write tables and figures.

    The results go to ``<config.out>/<name>/`` (``name``: ``config.name``, else the
    dataset, with ``-quick`` for a quick run). :func:`run_reproduce_seeds` runs it once
    per seed and writes the spread.

    Parameters
    ----------
    config
        The run's options.
    log
        Where progress lines go.

    Returns
    -------
    Report
        The numbers that were written to ``results.json``.

    Raises
    ------
    MissingDependencyError
        Without the ``train`` extra (torch, tqdm), before anything is loaded or trained.
        A missing matplotlib only skips the figures (one line in ``log``).
    """
    require_train_extra("asyncsnn reproduce")
    tic = time.perf_counter()
    prepared = _prepare(config)
    out = Path(config.out) / _folder_name(config)
    out.mkdir(parents=True, exist_ok=True)
    report = _train_evaluate_write(config, prepared, out, log, tic=tic)
    log("")
    log((out / "table.md").read_text())
    log(report.findings)
    log(f"\nwrote {', '.join(report.files)} to {out} in {report.wall_time_s:.0f} s")
    return report


def _evaluate_cells(
    config: ReproduceConfig,
    nets: Mapping[str, Network],
    test_x: np.ndarray,
    test_y: np.ndarray,
    log: Callable[[str], None],
) -> list[Cell]:
    """Every cell of the table: each trained network on each inference scheduler and stop rule."""
    cells: list[Cell] = []
    for training in TRAINING:
        for inference in INFERENCE:
            for stop in STOPS:
                cell = evaluate_cell(
                    nets[training], test_x, test_y, training, inference, stop, config.forward_group_size, config.seed
                )
                cells.append(cell)
                log(
                    f"  trained {training:8} | {inference:8} {stop:12} | acc {100 * cell.accuracy:5.1f} % | "
                    f"spikes {cell.spikes_per_sample:8.1f} | steps to 1st output {cell.steps_to_first_output:5.2f}"
                )
    return cells


def _train_evaluate_write(
    config: ReproduceConfig, prepared: _Prepared, out: Path, log: Callable[[str], None], *, tic: float
) -> Report:
    """Train, evaluate and write one seed's results to ``out`` (an existing folder)."""
    import asyncsnn
    from asyncsnn._provenance import provenance
    from asyncsnn.cost import PROFILES
    from asyncsnn.reference import currents_before_spike
    from asyncsnn.torch import AsyncSNN, train

    ds, device, epochs, settings = prepared.ds, prepared.device, prepared.epochs, prepared.settings
    sizes = [math.prod(ds.input_shape), *config.hidden, ds.n_classes]
    log(f"dataset: {ds.description}; {len(ds.train_y)} train / {len(ds.test_y)} test samples")
    log(
        f"architecture: {' -> '.join(map(str, sizes))}{' (recurrent hidden layers)' if config.recurrent else ''}, "
        f"F = {config.forward_group_size}, {epochs} epochs, seed {config.seed}"
    )
    train_x = ds.train_x.reshape(len(ds.train_y), ds.train_x.shape[1], -1)
    test_x = ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1)
    nets: dict[str, Network] = {}
    history: dict[str, dict[str, list[Any]]] = {}
    for training in TRAINING:
        log(f"training: {training} ({'layered BPTT' if training == 'layered' else 'unlayered backprop'})")
        module = AsyncSNN.from_sizes(
            sizes, threshold=config.threshold, beta=config.beta, seed=config.seed, recurrent=config.recurrent
        )
        net, hist = train(
            module,
            (train_x, ds.train_y),
            scheduler=Scheduler(training),
            forward_group_size=config.forward_group_size,
            epochs=epochs,
            lr=config.lr,
            loss=config.loss,
            batch_size=config.batch_size,
            seed=config.seed,
            test_data=(test_x, ds.test_y),
            progress=config.progress,
            device=config.device,
            distributed=False,
        )
        nets[training] = net
        history[training] = {k: list(v) for k, v in asdict(hist).items()}
        meta = training_metadata(
            training=training,
            dataset=ds.name,
            forward_group_size=config.forward_group_size,
            lr=config.lr,
            epochs=epochs,
            batch_size=config.batch_size,
            hidden=list(config.hidden),
            recurrent=config.recurrent,
            bias=0.0,
            reset="zero",
            alpha=0.0,
            surrogate_terms="fired",
            input_dropout=0.0,
            spike_dropout=0.0,
            prioritize_input=True,
            loss=config.loss,
            beta=config.beta,
            threshold=config.threshold,
            seed=config.seed,
            max_train=settings["max_train"],
            max_test=settings["max_test"],
            train_samples=len(ds.train_y),
            device=str(device),
            flatten_input="1",
        )
        asyncsnn.save(net, out / f"model_{training}.safetensors", metadata=meta)
    cells = _evaluate_cells(config, nets, test_x, ds.test_y, log)
    sweep: dict[str, dict[str, list[float]]] = {}
    spikes_per_neuron: dict[str, list[float]] = {}
    currents: dict[str, list[int]] = {}
    n_trace = min(len(ds.test_y), 24 if config.quick else 64)
    for training in TRAINING:
        net = nets[training]
        accs = []
        for extra in EXTRA_STEPS_SWEEP:
            r = asyncsnn.infer(
                net,
                test_x,
                scheduler="momentum",
                forward_group_size=config.forward_group_size,
                stop="first_output",
                extra_steps=extra,
                seed=config.seed,
                labels=ds.test_y,
            )
            accs.append(float(r.accuracy or 0.0))
        drained = asyncsnn.infer(
            net,
            test_x,
            scheduler="momentum",
            forward_group_size=config.forward_group_size,
            seed=config.seed,
            labels=ds.test_y,
        )
        sweep[training] = {"accuracy": accs, "drained": [float(drained.accuracy or 0.0)]}
        sizes_pop = np.array(net.population_sizes[1:], dtype=float)
        spikes_per_neuron[training] = (drained.spikes.mean(axis=0) / sizes_pop).tolist()
        per_pop = currents_before_spike(
            net, test_x[:n_trace], scheduler="momentum", forward_group_size=config.forward_group_size, seed=config.seed
        )
        currents[training] = np.concatenate(per_pop[:-1]).tolist() if len(per_pop) > 1 else []
    f_sweep = sweep_forward_group_sizes(nets, test_x, ds.test_y, settings["f_sweep"], config.seed)
    report = Report(
        config={**asdict(config), "epochs": epochs},
        dataset=ds.name,
        description=ds.description,
        n_train=len(ds.train_y),
        n_test=len(ds.test_y),
        input_shape=list(ds.input_shape),
        architecture=sizes,
        history=history,
        cells=cells,
        sweep=sweep,
        spikes_per_neuron=spikes_per_neuron,
        currents_to_spike=currents,
        findings=findings_paragraph(cells, config.forward_group_size),
        wall_time_s=0.0,
        profiles={name: p.as_dict() for name, p in PROFILES.items()},
        provenance=provenance(),
        settings=settings,
        f_sweep=f_sweep,
    )
    # The results first: whatever happens to the figures, the numbers are on disk.
    _write_table(out / "table.md", cells, header=table_header(report))
    _write_csv(out / "results.csv", cells)
    models = [f"model_{t}.safetensors" for t in TRAINING]
    report.files = ["table.md", "results.json", "results.csv", *models]
    report.wall_time_s = time.perf_counter() - tic
    (out / "results.json").write_text(json.dumps(asdict(report), indent=1, default=float))
    figures = _draw(asdict(report), out, log)
    if figures is not None:
        report.figures = figures
        report.files = ["table.md", "results.json", "results.csv", *report.figures, "figures.md", *models]
        report.wall_time_s = time.perf_counter() - tic
        (out / "results.json").write_text(json.dumps(asdict(report), indent=1, default=float))
    return report


def _draw(results: Mapping[str, Any], out: Path, log: Callable[[str], None]) -> dict[str, str] | None:
    """Draw the figures of ``results`` into ``out``; None (and one line in ``log``) without matplotlib."""
    try:
        from asyncsnn.figures import draw_figures

        return draw_figures(results, out)
    except ImportError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        log(f"figures skipped: matplotlib cannot be imported ({exc}); pip install matplotlib")
        return None


# ============================================================================ several seeds
#: The keys that name a row of ``cells`` and of ``f_sweep`` (kept as they are over seeds).
_CELL_KEYS = ("training", "inference", "stop")
_SWEEP_KEYS = ("training", "inference", "forward_group_size")


@dataclass
class SeedsReport:
    """What :func:`run_reproduce_seeds` produced."""

    #: The aggregate ``results.json`` (every number a stat over the seeds, :func:`aggregate_results`).
    results: dict[str, Any]
    #: Each seed's own report (also in ``seed_<seed>/results.json``).
    reports: dict[int, Report]
    #: The folder of the aggregate (``<out>/<name>``).
    folder: Path
    #: The seeds whose complete earlier folder was reused (``resume=True``).
    reused: list[int] = field(default_factory=list)


def report_from_dict(data: Mapping[str, Any]) -> Report:
    """The :class:`Report` of a single run's ``results.json`` mapping.

    Raises
    ------
    InputError
        A key of :class:`Report` without a default is missing, or a cell lacks a field
        (``field`` is ``results.json``).
    """
    from dataclasses import fields

    names = {f.name for f in fields(Report)}
    kwargs = {k: v for k, v in data.items() if k in names}
    try:
        kwargs["cells"] = [Cell(**c) for c in data["cells"]]
        return Report(**kwargs)
    except (KeyError, TypeError) as exc:
        raise invalid(InputError, "results.json", None, f"is not a results.json of one run ({exc})") from None


def _stat_tree(per_seed: Sequence[Any]) -> Any:
    """Numbers to a stat, mappings key by key, lists element by element (one value per seed)."""
    from asyncsnn._spread import stat

    first = next((v for v in per_seed if v is not None), None)
    if isinstance(first, Mapping):
        return {k: _stat_tree([None if v is None else v.get(k) for v in per_seed]) for k in first}
    if isinstance(first, list):
        lengths = {len(v) for v in per_seed if v is not None}
        if len(lengths) != 1:
            raise ValueError(f"the seeds' lists differ in length ({sorted(lengths)})")
        return [_stat_tree([None if v is None else v[i] for v in per_seed]) for i in range(len(first))]
    return stat(per_seed)


def _merge_rows(rows_per_seed: Sequence[Sequence[Mapping[str, Any]]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of every seed matched by ``keys``, each other field a stat (in the first seed's order)."""
    index = [{tuple(r[k] for k in keys): r for r in rows} for rows in rows_per_seed]
    merged = []
    for row in rows_per_seed[0]:
        ident = tuple(row[k] for k in keys)
        same = [idx.get(ident) for idx in index]
        if any(r is None for r in same):
            raise ValueError(f"the row {ident} is missing in a seed's results")
        out = {k: row[k] for k in keys}
        out.update({k: _stat_tree([r[k] for r in same if r is not None]) for k in row if k not in keys})
        merged.append(out)
    return merged


def _merge_settings(per_seed: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """The seeds' settings: ``seed`` becomes ``seeds``; a setting that differs is listed per seed."""
    merged: dict[str, Any] = {}
    for key in per_seed[0]:
        if key == "seed":
            merged["seeds"] = list(seeds)
            continue
        vals = [s.get(key) for s in per_seed]
        merged[key] = vals[0] if all(v == vals[0] for v in vals) else vals
    return merged


def aggregate_results(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The aggregate ``results.json`` of several seeds' ``results.json`` mappings.

    Every number of ``cells``, ``f_sweep``, ``sweep``, ``history`` and
    ``spikes_per_neuron`` becomes a stat over the seeds (:func:`asyncsnn._spread.stat`:
    ``mean``, ``std`` with ddof = 1, ``min``, ``max``, ``n``, ``values`` in the order of
    ``seeds``); the rows keep their names (training, inference, stop, F).
    ``currents_to_spike`` pools the seeds' counts. ``settings`` has ``seeds`` in place of
    ``seed``; ``provenance``, ``profiles`` and the dataset fields are the first seed's
    (equal for every seed of one run). ``findings`` is :func:`findings_over_seeds`.

    Parameters
    ----------
    per_seed
        Seed to that seed's ``results.json`` (as :func:`run_reproduce` writes it), two or more.

    Returns
    -------
    dict
        The aggregate, without ``files``, ``figures`` and ``wall_time_s`` (the caller's).
    """
    seeds = list(per_seed)
    runs = [per_seed[s] for s in seeds]
    first = runs[0]
    currents: dict[str, list[int]] = {}
    for run in runs:
        for training, counts in (run.get("currents_to_spike") or {}).items():
            currents.setdefault(training, []).extend(int(c) for c in counts)
    cells = _merge_rows([r["cells"] for r in runs], _CELL_KEYS)
    f = int(first["settings"].get("forward_group_size", first.get("config", {}).get("forward_group_size", 0)))
    return {
        "seeds": seeds,
        "seed_folders": [f"seed_{s}" for s in seeds],
        "config": {**{k: v for k, v in first.get("config", {}).items() if k != "seed"}, "seeds": seeds},
        "dataset": first["dataset"],
        "description": first["description"],
        "n_train": first["n_train"],
        "n_test": first["n_test"],
        "input_shape": first["input_shape"],
        "architecture": first["architecture"],
        "settings": _merge_settings([r["settings"] for r in runs], seeds),
        "provenance": dict(first.get("provenance") or {}),
        "profiles": dict(first.get("profiles") or {}),
        "cells": cells,
        "f_sweep": _merge_rows([r.get("f_sweep", []) for r in runs], _SWEEP_KEYS),
        "sweep": _stat_tree([r.get("sweep", {}) for r in runs]),
        "history": _stat_tree([r.get("history", {}) for r in runs]),
        "spikes_per_neuron": _stat_tree([r.get("spikes_per_neuron", {}) for r in runs]),
        "currents_to_spike": currents,
        "seed_wall_time_s": [float(r.get("wall_time_s", float("nan"))) for r in runs],
        "findings": findings_over_seeds(cells, f, seeds),
    }


def findings_over_seeds(cells: Sequence[Mapping[str, Any]], f: int, seeds: Sequence[int]) -> str:
    """The findings paragraph of several seeds: each claim as mean ± std and on how many seeds it holds.

    Computed seed by seed from the aggregate cells (:func:`aggregate_results`: each
    number a stat with one value per seed), never pre-written. Where the cells have the
    decision latency (:mod:`asyncsnn.latency`), one sentence per asynchronous scheduler
    sets the unlayered-trained model's against layered inference of the same model (the
    ``vs_layered_*`` ratios, per seed: above 1, the asynchronous run decides sooner).

    Examples
    --------
    >>> from asyncsnn._spread import stat
    >>> def cell(t, i, acc, spikes, steps):
    ...     return dict(training=t, inference=i, stop="drain", accuracy=stat(acc), spikes_per_sample=stat(spikes),
    ...                 steps_to_first_output=stat(steps), synops_per_sample=stat([1.0, 1.0, 1.0]))
    >>> cells = [cell("layered", "momentum", [0.80, 0.82, 0.84], [1000, 1000, 1000], [3.0, 3.0, 3.0]),
    ...          cell("momentum", "momentum", [0.85, 0.81, 0.86], [600, 800, 1100], [2.0, 2.5, 3.5])]
    >>> print(findings_over_seeds(cells, 8, [0, 1, 2]))  # doctest: +NORMALIZE_WHITESPACE
    Over 3 seeds (0, 1, 2), mean ± standard deviation (ddof = 1): Under momentum inference (F = 8), the model
    trained with unlayered/momentum used 17 ± 25 % fewer spikes per sample than the layered-trained model on 2 of
    3 seeds (833 ± 252 vs 1000 ± 0), at +2.0 ± 3.0 points of accuracy (higher on 2 of 3 seeds; 84.0 ± 2.6 % vs
    82.0 ± 2.0 %), and reached its first output spike of a timestep after 2.7 ± 0.8 forward steps vs 3.0 ± 0.0
    (1.19 ± 0.32x, sooner on 2 of 3 seeds).
    """
    from asyncsnn._spread import fmt, held, on_seeds, paired, summary

    by = {(c["training"], c["inference"], c["stop"]): c for c in cells}

    def pct(new: np.ndarray, old: np.ndarray) -> np.ndarray:
        return np.asarray(100.0 * (new - old) / np.where(old == 0, np.nan, old), dtype=float)

    def pct_text(change: np.ndarray) -> str:
        return summary(change, ".0f", absolute=True, unit=" %")

    def acc(value: Any) -> str:
        return fmt(value, ".1f", scale=100.0, unit=" %")

    def word(change: np.ndarray, down: str, up: str) -> str:
        return down if float(np.nanmean(change)) < 0 else up

    parts = []
    for inf in ("momentum", "random"):
        base, same = by.get(("layered", inf, "drain")), by.get((inf, inf, "drain"))
        if base is None or same is None:
            continue
        spikes = paired(pct, same["spikes_per_sample"], base["spikes_per_sample"])
        points = paired(lambda a, b: 100.0 * (a - b), same["accuracy"], base["accuracy"])
        ratio = paired(
            lambda b, a: b / np.where(a == 0, np.nan, a), base["steps_to_first_output"], same["steps_to_first_output"]
        )
        higher = on_seeds(points, "higher", "lower")
        sooner = on_seeds(ratio - 1.0, "sooner", "later")
        parts.append(
            f"Under {inf} inference (F = {f}), the model trained with unlayered/{inf} used "
            f"{pct_text(spikes)} {word(spikes, 'fewer', 'more')} spikes per sample than the layered-trained model"
            f"{held(spikes)} ({fmt(same['spikes_per_sample'], '.0f')} vs {fmt(base['spikes_per_sample'], '.0f')}), at "
            f"{summary(points, '+.1f')} points of accuracy ({higher}; {acc(same['accuracy'])} vs "
            f"{acc(base['accuracy'])}), and reached its first output spike of a timestep after "
            f"{fmt(same['steps_to_first_output'], '.1f')} forward steps vs {fmt(base['steps_to_first_output'], '.1f')} "
            f"({summary(ratio, '.2f')}x, {sooner})."
        )
    for inf in ("momentum", "random"):
        cell = by.get((inf, inf, "drain"))
        if cell is not None and "steps_to_decision" in cell:
            parts.append(_decision_over_seeds(cell))
    lay = by.get(("layered", "layered", "drain"))
    lay_async = [by[k] for k in (("layered", "random", "drain"), ("layered", "momentum", "drain")) if k in by]
    if lay is not None and lay_async:
        worst = paired(lambda *accs: np.minimum.reduce(accs), *[c["accuracy"] for c in lay_async])
        lost = paired(lambda a, w: 100.0 * (a - w), lay["accuracy"], worst)
        names = " and ".join(c["inference"] for c in lay_async)
        parts.append(
            f"The layered-trained model lost {summary(lost, '.1f')} points when run asynchronously (the worse of "
            f"{names} inference on each seed: {summary(100.0 * worst, '.1f')} % vs {acc(lay['accuracy'])} "
            f"layer-synchronous; {on_seeds(lost, 'lower asynchronously', 'higher asynchronously')})."
        )
    for t in ("random", "momentum"):
        early, full = by.get((t, t, "first_output")), by.get((t, t, "drain"))
        if early is None or full is None:
            continue
        synops = paired(pct, early["synops_per_sample"], full["synops_per_sample"])
        parts.append(
            f"Stopping each timestep at the first output spike, unlayered/{t} kept {acc(early['accuracy'])} accuracy "
            f"(drained: {acc(full['accuracy'])}) with {pct_text(synops)} {word(synops, 'fewer', 'more')} synaptic "
            f"operations{held(synops)}."
        )
    if not parts:
        return "Not enough cells to compare."
    head = f"Over {len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± standard deviation (ddof = 1): "
    return head + " ".join(parts)


def _decision_over_seeds(cell: Mapping[str, Any]) -> str:
    """:func:`decision_sentence` over seeds: means ± std, each ratio's spread and on how many seeds it holds.

    The ratios are the cell's ``vs_layered_*`` (layered inference of the same model over
    this cell, per seed): above 1, the asynchronous run decides sooner.
    """
    from asyncsnn._spread import fmt, on_seeds, paired, summary

    def ratios(what: str) -> str:
        texts = []
        for unit in ("steps", "synops"):
            per_seed = paired(lambda r: r, cell.get(f"vs_layered_{unit}_to_{what}"))
            held = on_seeds(per_seed - 1.0, "sooner", "later")
            texts.append(f"{summary(per_seed, '.2f')}x in {unit}" + (f", {held}" if held else ""))
        return "layered/async: " + "; ".join(texts)

    return (
        f"Against layered inference of the same model, unlayered/{cell['training']} under {cell['inference']} "
        f"inference reached its stable decision after {fmt(cell['steps_to_decision'], '.1f')} forward steps and "
        f"{fmt(cell.get('synops_to_decision'), '.0f')} synaptic operations per sample ({ratios('decision')}), "
        f"and its first correct output spike after {fmt(cell.get('steps_to_correct'), '.1f')} forward steps "
        f"({ratios('correct')})."
    )


def _aggregate_table(results: Mapping[str, Any]) -> str:
    return table_header(results) + _table_text(results["cells"])


def _write_aggregate_csv(path: Path, cells: Sequence[Mapping[str, Any]], n_seeds: int) -> None:
    """``results.csv`` of several seeds: per numeric column ``<col>_mean``, ``_std``, ``_min``, ``_max``."""
    names = _cost_names_of(cells)
    numeric = [k for k in cells[0] if k not in (*_CELL_KEYS, "cost")]
    columns = [(k, None, None) for k in numeric] + [(f"{key}_{n}", n, key) for n in names for key in COST_KEYS]
    stats = ("mean", "std", "min", "max")
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*_CELL_KEYS, "n_seeds", *[f"{col}_{s}" for col, _, _ in columns for s in stats]])
        for c in cells:
            row: list[Any] = [c[k] for k in _CELL_KEYS] + [n_seeds]
            for col, profile, key in columns:
                value = c[col] if profile is None else c.get("cost", {}).get(profile, {}).get(key or "")
                row += [None if value is None else value[s] for s in stats]
            writer.writerow(row)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise invalid(ParameterError, "seeds", seeds, "needs two seeds or more (run_reproduce runs one)")
    if len(set(seeds)) != len(seeds):
        raise invalid(ParameterError, "seeds", seeds, "names a seed twice")
    if min(seeds) < 0:
        raise invalid(ParameterError, "seeds", seeds, "must be >= 0")
    return seeds


def _reuse(folder: Path, settings: Mapping[str, Any], prov: Mapping[str, str]) -> tuple[Report | None, str]:
    """The report of a complete earlier seed folder with these settings and this code, or why not."""
    path = folder / "results.json"
    if not path.is_file():
        return None, "no earlier results"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"its results.json cannot be read ({exc})"
    if not isinstance(data, dict):
        return None, "its results.json is not a JSON object"
    ours = json.loads(json.dumps(settings, default=float))
    theirs = data.get("settings") or {}
    for key in dict.fromkeys([*ours, *theirs]):
        if ours.get(key) != theirs.get(key):
            return None, f"other settings ({key} = {theirs.get(key)!r} there, {ours.get(key)!r} now)"
    missing = [name for name in data.get("files") or [] if not (folder / name).is_file()]
    if missing or not data.get("files"):
        return None, f"incomplete (missing {', '.join(missing) or 'its file list'})"
    commit = str(prov.get("commit", ""))
    if commit.endswith("+dirty"):
        return None, "the code has uncommitted changes (commit ...+dirty): it may differ from the earlier run's"
    there = data.get("provenance") or {}
    for key in dict.fromkeys([*prov, *there]):
        if prov.get(key) != there.get(key):
            return None, f"other code or environment ({key} = {there.get(key)!r} there, {prov.get(key)!r} now)"
    try:
        return report_from_dict(data), ""
    except InputError as exc:
        return None, str(exc)


def _prefixed(log: Callable[[str], None], tag: str) -> Callable[[str], None]:
    """``log`` with every line starting with ``tag``."""

    def prefixed(line: str) -> None:
        log(f"{tag} {line}")

    return prefixed


def _replace_folder(partial: Path, folder: Path) -> None:
    """Move the completed ``partial`` folder to ``folder``, replacing an earlier one."""
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def run_reproduce_seeds(
    config: ReproduceConfig,
    seeds: Sequence[int],
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> SeedsReport:
    """:func:`run_reproduce` once per seed, then the mean, spread and figures over the seeds.

    Each seed's complete output (what :func:`run_reproduce` writes for ``config`` with that
    ``seed``) goes to ``<out>/<name>/seed_<seed>/``: it is written to a hidden
    ``.seed_<seed>.partial/`` folder and renamed when complete, so a ``seed_<seed>/``
    folder is always a finished run, and an interruption or a failure in a later seed
    leaves the earlier seeds' folders as they are. When every seed is done, the
    aggregate is written to ``<out>/<name>/``: ``results.json``
    (:func:`aggregate_results`, with ``files``, ``figures`` and ``wall_time_s``),
    ``table.md`` (each number as ``mean ± std``), ``results.csv`` (``_mean``, ``_std``,
    ``_min``, ``_max`` per column) and the figures with error bars or bands.

    Parameters
    ----------
    config
        The options of every seed's run (its ``seed`` is replaced by each of ``seeds``).
    seeds
        Two or more distinct seeds, in the order they run.
    resume
        Reuse a ``seed_<seed>/`` folder of an earlier run instead of training that seed
        again when it is complete and was made with the same settings (every entry of
        its ``settings``) by the same code and environment (its ``provenance``: version,
        commit, Python, NumPy, torch, platform); never from a checkout with uncommitted
        changes (``+dirty``). Any other folder is trained again and replaced, with one
        line in ``log`` saying why. Without ``resume`` every seed is trained.
    log
        Where progress lines go; the lines of one seed's run start with ``[seed S]``.

    Returns
    -------
    SeedsReport

    Raises
    ------
    ParameterError
        Fewer than two seeds, a seed named twice or a negative seed (``field``: ``seeds``).
    MissingDependencyError
        Without the ``train`` extra, before anything is loaded or trained.
    """
    from asyncsnn._provenance import provenance

    require_train_extra("asyncsnn reproduce")
    seeds = _check_seeds(seeds)
    tic = time.perf_counter()
    root = Path(config.out) / _folder_name(config)
    root.mkdir(parents=True, exist_ok=True)
    reports: dict[int, Report] = {}
    reused: list[int] = []
    for i, seed in enumerate(seeds):
        cfg = replace(config, seed=seed)
        folder = root / f"seed_{seed}"
        tag = f"[seed {seed}]"
        log(f"{tag} seed {seed} ({i + 1} of {len(seeds)}) -> {folder}")
        prepared = _prepare(cfg)
        if resume:
            earlier, why = _reuse(folder, prepared.settings, provenance())
            if earlier is not None:
                log(f"{tag} reused: {folder} is complete, with the same settings and code")
                reports[seed], reused = earlier, [*reused, seed]
                continue
            log(f"{tag} trained again: {why}")
        partial = root / f".seed_{seed}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        seed_tic = time.perf_counter()
        try:
            report = _train_evaluate_write(cfg, prepared, partial, _prefixed(log, tag), tic=seed_tic)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _replace_folder(partial, folder)
        reports[seed] = report
        log(f"{tag} done in {report.wall_time_s:.0f} s: {folder}")
    per_seed = {s: asdict(r) for s, r in reports.items()}
    results = aggregate_results(per_seed)
    # The numbers first (table, CSV, JSON), then the figures, as for one seed.
    table = _aggregate_table(results)
    (root / "table.md").write_text(table)
    _write_aggregate_csv(root / "results.csv", results["cells"], len(seeds))
    folders = [f"seed_{s}" for s in seeds]
    results["files"] = ["table.md", "results.json", "results.csv", *folders]
    results["figures"] = {}
    results["wall_time_s"] = time.perf_counter() - tic
    (root / "results.json").write_text(json.dumps(results, indent=1, default=float))
    figures = _draw(results, root, log)
    if figures is not None:
        results["figures"] = figures
        results["files"] = ["table.md", "results.json", "results.csv", *figures, "figures.md", *folders]
        results["wall_time_s"] = time.perf_counter() - tic
        (root / "results.json").write_text(json.dumps(results, indent=1, default=float))
    others = sorted(p.name for p in root.iterdir() if p.name not in results["files"] and not p.name.startswith("."))
    log("")
    log(table)
    log(results["findings"])
    log(f"\nwrote {', '.join(results['files'])} to {root} in {results['wall_time_s']:.0f} s")
    if others:
        log(f"also in {root}, not from this run: {', '.join(others)}")
    return SeedsReport(results=results, reports=reports, folder=root, reused=reused)
