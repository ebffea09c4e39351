"""The torch engine: ``docs/semantics.md`` vectorised over a batch, differentiable.

:func:`run` executes the forward semantics of sections 3-7 on a batch ``[B, N]`` of
samples (``N`` = all non-input neurons, global ids of R1.5), one Python iteration per
forward step, every sample of the batch advancing its own forward step ``k`` at once.
Under autograd it is the unlayered backpropagation of section 9; under
``torch.no_grad()`` it is an inference engine whose counters equal the reference
engine's exactly (R8.2 grid weights). :func:`infer` is that inference engine behind the
``asyncsnn.infer`` signature.

One timestep ``t`` (R4), in :mod:`~asyncsnn.torch.engine.driver`:

* **Leak** (R4.1) ``V <- beta V``; refractory flags, ``v_pre``, the pending
  multiplicities ``Q`` and the sequence numbers are cleared (the pending set is empty
  at every timestep start, R6, so restarting the fifo counter changes no order).
* **Input** (R4.2): the frame's currents, one matmul/conv per input projection for the
  whole batch (:mod:`~asyncsnn.torch.engine.delivery`).
* **Forward step k** (R4.3), on the rows whose timestep is still running:

  1. integrate ``U = V + I * live`` and fire ``U > theta``, reset, refractory mask
     (R4.6), ``Q += s`` (:mod:`~asyncsnn.torch.engine.step`);
  2. counters (R7, :mod:`~asyncsnn.torch.engine.counters`), the pending set, the stop
     check (R6) and the set-aside of the rows whose timestep has ended
     (:mod:`~asyncsnn.torch.engine.bookkeeping`);
  3. silent spikes of the populations that became settled (section 9,
     :mod:`~asyncsnn.torch.engine.silent`);
  4. select and deliver (R5, :mod:`~asyncsnn.torch.engine.bookkeeping` and
     :mod:`~asyncsnn.torch.engine.delivery`).

**Settling** (R1.6, R4.7, R4.8). In a network with a bias or a reset other than
``"zero"`` the rows also carry their due populations, the populations that settle at
the next integration and the ``"subtract_delayed"`` debts; the forward step adds the
biases, pays the debts, applies the population's reset mode and fires the integrated
neurons only, a row with nothing pending and a due population runs a settle-only
step, and the silent spikes of a population wait until it and the populations below
it have settled (:mod:`~asyncsnn.torch.engine.settling`). Other networks run the
version-1 code unchanged.

**Synaptic currents** (R4.12). A population with ``alpha != 0`` settles and its
neurons keep a synaptic current ``S`` across timesteps (in the graph, ``alpha`` a
constant): at the settle ``S <- alpha S + I`` and the membrane integrates ``S``, later
deliveries charge ``S`` and the membrane; under ``layered`` training is the BPTT of
snnTorch's ``Synaptic`` (:mod:`~asyncsnn.torch.engine.settling`,
:mod:`~asyncsnn.torch.engine.silent`).

**Recurrent projections** (R1.2, R4.9) make their targets settling populations. Under
the unlayered schedulers they are delivered like forward projections, in the same
timestep, and the silent spikes wait for every population a pending neuron can still
reach; under ``layered`` their current is carried to the next timestep in the rows'
``carry`` (``C``, in the graph), added when the target next settles, so layered
training of a recurrent network is its BPTT (section 9).

Masks and counts are float tensors (0/1 and small integers are exact in float32):
boolean and int64 kernels are several times slower on the CPU. A step whose membranes
are not all finite is recomputed with exact selects, and the run raises ``EngineError``
for the lowest failing sample, never returning counters (R8.3).

**Backends.** ``run(..., backend=...)`` picks the code of a forward step's bookkeeping
and kernels: ``"host"`` (the default on the CPU) runs the forward step, the
take-and-deliver through the weight table and the unlayered bookkeeping's merge and
selection in Rust kernels (``rust/train_kernels/``, through
:mod:`asyncsnn.torch._kernels`) and the rest of the bookkeeping in numpy;
``"torch"`` (the default elsewhere) runs everything in torch. On the CPU a forward
step's element-wise work costs more in kernel launches than in arithmetic, hence the
host backend; both do the same float32 operations and the tests run both against the
reference engine. The Rust kernels are not the Rust inference engine: that one runs
one sample as an event loop, these are the torch engine's batch operations.

**Gradients** (section 9). A spike is ``H(V - theta)`` forward and
``surrogate.derivative(V - theta)`` backward, the reset ``V <- V (1 - s)`` is in the
graph, the leak, masks, selections and random draws are constants; the pending
multiplicity carries the spike's graph to the step that delivers it, so gradients flow
along the realised delivery order through every forward step. Neurons that do not
fire pass their surrogate gradient through one silent spike per timestep
(:mod:`~asyncsnn.torch.engine.silent`). The spike's surrogate term is kept for the
neurons that fired only (their positions, membranes and thresholds), which is also
all the memory a step's node saves besides the refractory mask. With the ``layered``
scheduler training is layered BPTT (R4.5: each neuron contributes ``s_t = H(U_t -
theta)`` once per timestep at its final membrane ``U_t``); any scheduler with ``F`` at
least the widest population gives the same gradients on a network without skip
connections or recurrent projections (those it delivers in the timestep, R4.9). Spike evaluations of steps in which a neuron neither fires nor emits its
silent spike carry no gradient with ``surrogate_terms="fired"`` (the default); with
``"every_step"`` (asynctorch's) every forward step in which a non-refractory neuron is
integrated adds the term of ``H(V - theta)``, also when it does not fire
(:func:`~asyncsnn.torch.engine.step.open_terms`).

Modules: :mod:`~asyncsnn.torch.engine.plan` (the network laid out, devices,
weights), :mod:`~asyncsnn.torch.engine.rows` (the state of the running rows),
:mod:`~asyncsnn.torch.engine.context` (the constants of a run),
:mod:`~asyncsnn.torch.engine.step`, :mod:`~asyncsnn.torch.engine.delivery`,
:mod:`~asyncsnn.torch.engine.bookkeeping` (the interface) with
:mod:`~asyncsnn.torch.engine.host_bookkeeping` and
:mod:`~asyncsnn.torch.engine.torch_bookkeeping`, :mod:`~asyncsnn.torch.engine.silent`,
:mod:`~asyncsnn.torch.engine.settling`,
:mod:`~asyncsnn.torch.engine.counters`, :mod:`~asyncsnn.torch.engine.driver`
(:func:`run`) and :mod:`~asyncsnn.torch.engine.inference`.
"""

from asyncsnn.torch.engine.bookkeeping import BACKENDS
from asyncsnn.torch.engine.delivery import Delivery
from asyncsnn.torch.engine.driver import RunOutput, gc_paused, run
from asyncsnn.torch.engine.inference import infer
from asyncsnn.torch.engine.plan import Plan, ProjectionPlan, as_tensor, network_weights, torch_device

__all__ = [
    "BACKENDS",
    "Delivery",
    "Plan",
    "ProjectionPlan",
    "RunOutput",
    "as_tensor",
    "gc_paused",
    "infer",
    "network_weights",
    "run",
    "torch_device",
]
