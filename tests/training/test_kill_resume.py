"""SIGKILL at a random moment, then ``--resume``: training ends with the uninterrupted weights.

A real ``asyncsnn train`` subprocess is killed (``SIGKILL``: no handler, no cleanup)
while it trains; re-running the same command with ``--resume`` continues from the last
complete checkpoint and must save exactly the weights of a run that was never
interrupted (same seed). Checkpoints are written through a temporary file and a
rename, so a kill during a write never leaves a truncated ``epoch_*.safetensors``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import asyncsnn

torch = pytest.importorskip("torch")

from asyncsnn.torch import load_checkpoint  # noqa: E402

# Small enough that one epoch takes a fraction of a second (with one torch thread).
EPOCHS = 4
TRAIN_ARGS = [
    "train",
    "--dataset",
    "digits",
    "--max-train",
    "256",
    "--max-test",
    "16",
    "--epochs",
    str(EPOCHS),
    "--hidden",
    "16",
    "--batch-size",
    "32",
    "--seed",
    "3",
    "--scheduler",
    "fifo",
    "-F",
    "32",
    "--no-progress",
]


# One torch thread everywhere: the same arithmetic in this process and in the killed one,
# and no spinning worker threads on a small machine (several times faster here).
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _command(ckpt: Path, out: Path, args: list[str] = TRAIN_ARGS) -> list[str]:
    return [sys.executable, "-m", "asyncsnn", *args, "--checkpoint-dir", str(ckpt), "--resume", "--out", str(out)]


def _weights(path: Path) -> list[np.ndarray]:
    net = asyncsnn.load(path)
    return [p.layer.weight for p in net.projections if hasattr(p.layer, "weight")]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)  # bit for bit, not approximately


def _train_here(args: list[str], out: Path, ckpt: Path | None = None, resume: bool = False) -> None:
    """Run ``asyncsnn train`` in this process (the command's own code path)."""
    from asyncsnn.cli import main

    extra = [] if ckpt is None else ["--checkpoint-dir", str(ckpt)]
    assert main([*args, *extra, *(["--resume"] if resume else []), "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The uninterrupted run: its model file and its checkpoint folder."""
    tmp = tmp_path_factory.mktemp("reference")
    out, ckpt = tmp / "reference.safetensors", tmp / "ckpt"
    _train_here(TRAIN_ARGS, out, ckpt)
    return out, ckpt


def _checkpoints_are_complete(ckpt: Path) -> list[int]:
    """Every ``epoch_*.safetensors`` loads (a kill may leave only a temporary file); returns the epochs."""
    epochs = []
    for p in sorted(ckpt.glob("epoch_*.safetensors")):
        epochs.append(int(load_checkpoint(p)["epoch"]))
    return epochs


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], extra: float, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` ``extra`` seconds after ``ready()`` first holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the training run never became ready")
        time.sleep(0.01)
    time.sleep(extra)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # The run may have exited on its own between the poll and the signal (a zombie takes
    # the signal without effect): then it finished first, with success.
    assert proc.returncode in (0, -signal.SIGKILL)
    return proc.returncode == -signal.SIGKILL


def test_sigkill_during_training_then_resume_gives_the_uninterrupted_weights(
    tmp_path: Path, reference: tuple[Path, Path]
) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "model.safetensors"
    rng = random.Random(os.environ.get("ASYNCSNN_KILL_SEED", "0"))
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(_command(ckpt, out), stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        # Kill at a random moment after the first checkpoint: in a later epoch, or while a
        # checkpoint is being written.
        killed = _kill_when(proc, lambda: (ckpt / "epoch_0001.safetensors").exists(), extra=rng.uniform(0.0, 0.4))
    assert killed or proc.returncode == 0, log.read_text()
    done = _checkpoints_are_complete(ckpt)
    assert done
    assert done == list(range(1, len(done) + 1))
    first = (ckpt / "epoch_0001.safetensors").stat().st_mtime_ns
    # The same command again (in this process, to save an interpreter start).
    _train_here(TRAIN_ARGS, out, ckpt, resume=True)
    # It resumed (epoch 1 was not trained again) and ended where the uninterrupted run did.
    assert (ckpt / "epoch_0001.safetensors").stat().st_mtime_ns == first
    assert _checkpoints_are_complete(ckpt) == list(range(1, EPOCHS + 1))
    _assert_same_weights(reference[0], out)
    # ...and training did move the weights after epoch 1 (the comparison is not vacuous).
    after_one = load_checkpoint(ckpt / "epoch_0001.safetensors")["weights"]
    assert any(not np.array_equal(w.numpy(), v) for w, v in zip(after_one, _weights(out)))


def test_a_damaged_newest_checkpoint_is_skipped(tmp_path: Path, reference: tuple[Path, Path]) -> None:
    """A truncated newest file (not written by us: a disk error, a copy) falls back to the one before."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "model.safetensors"
    ckpt.mkdir()
    for epoch in range(1, EPOCHS - 1):
        shutil.copy(reference[1] / f"epoch_{epoch:04d}.safetensors", ckpt / f"epoch_{epoch:04d}.safetensors")
    last = f"epoch_{EPOCHS:04d}.safetensors"
    (ckpt / last).write_bytes((reference[1] / last).read_bytes()[:100])  # truncated
    (ckpt / f".{last}.tmp.12345").write_bytes(b"partial")  # left by a killed writer
    _train_here(TRAIN_ARGS, out, ckpt, resume=True)
    _assert_same_weights(reference[0], out)  # resumed from epoch EPOCHS - 2, retrained the last two
    assert _checkpoints_are_complete(ckpt) == list(range(1, EPOCHS + 1))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_repeated_sigkills_at_random_moments(tmp_path: Path, seed: int) -> None:
    """Kill again and again (also before any checkpoint and inside checkpoint writes) until it finishes."""
    args = [*TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "6"
    # The uninterrupted run, as a subprocess like the killed ones: its wall time sets the
    # kill moments, so that they fall inside a run on a fast machine as on a slow one.
    reference = tmp_path / "reference.safetensors"
    start = time.monotonic()
    subprocess.run(_command(tmp_path / "ref_ckpt", reference, args), check=True, env=ENV, timeout=600)
    duration = time.monotonic() - start
    ckpt, out = tmp_path / "ckpt", tmp_path / "model.safetensors"
    rng = random.Random(seed)
    kills = 0
    for attempt in range(7):  # six kills at most, then a run that is left to finish
        proc = subprocess.Popen(
            _command(ckpt, out, args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )
        if attempt == 6:
            killed = False
        elif attempt == 0:  # within the first 60 % of a whole run's time (start-up included)
            killed = _kill_when(proc, lambda: True, extra=duration * rng.uniform(0.05, 0.6))
            if not killed:
                # This run was faster than the reference run (the machine's load changed):
                # start again and kill as soon as the first checkpoint is being written or
                # written, with five epochs still to train, so that the first kill lands.
                assert proc.wait(timeout=300) == 0
                shutil.rmtree(ckpt)
                out.unlink()
                proc = subprocess.Popen(
                    _command(ckpt, out, args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
                )
                killed = _kill_when(proc, lambda: any(ckpt.glob("*epoch_*")), extra=0.0)
                assert killed, "the run finished before its first checkpoint was seen"
        elif attempt % 3 == 2:  # inside a checkpoint write: as soon as a temporary file shows up
            killed = _kill_when(proc, lambda: any(ckpt.glob(".epoch_*")), extra=0.0)
        else:  # anywhere: during start-up, training, evaluation or saving; a run that
            # resumes is shorter and may finish first
            killed = _kill_when(proc, lambda: True, extra=duration * rng.uniform(0.05, 0.9))
        if not killed:
            assert proc.wait(timeout=300) == 0
            break
        kills += 1
        done = _checkpoints_are_complete(ckpt) if ckpt.exists() else []
        assert done == list(range(1, len(done) + 1))
    assert kills >= 1
    _assert_same_weights(reference, out)
