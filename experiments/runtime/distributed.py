"""Multi-process runs: start-up, who writes, the shared plan, and global batches from local rows.

Every process runs the same program (SPMD). Each builds only the batch rows and members its own
devices hold and contributes them with `jax.make_array_from_process_local_data`; process 0 alone
writes files; decisions read from disk (which cells are finished) are taken by process 0 and
broadcast, so all processes follow the same plan even without a shared file system.
"""

import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

_SIGTERM = threading.Event()


def _pod_environment():
  """True on a multi-host TPU slice, whose workers jax.distributed finds by itself."""
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "") or bool(
    os.environ.get("MEGASCALE_COORDINATOR_ADDRESS")
  )


def initialize(runtime):
  """Joins the processes of a run when asked (or on a TPU pod); before any other JAX call."""
  if not (runtime.distributed or _pod_environment()):
    return
  # CPU processes need a collectives backend to talk to each other; accelerators ignore this.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=runtime.coordinator_address or None,
    num_processes=runtime.num_processes or None,
    process_id=None if runtime.process_id < 0 else runtime.process_id,
  )
  logging.info(
    "process %d of %d, %d local devices of %d",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def is_writer():
  """Only process 0 writes metrics, cells, reports and TensorBoard events."""
  return jax.process_index() == 0


def agree(values):
  """Process 0's values, on every process (a no-op with one process)."""
  values = np.asarray(values)
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.broadcast_one_to_all(values))


def local_block(sharding, global_shape):
  """Per-dimension slices of the global array held by this process's devices."""
  index = list(sharding.addressable_devices_indices_map(tuple(global_shape)).values())
  block = []
  for d, size in enumerate(global_shape):
    starts = [i[d].start or 0 for i in index]
    stops = [size if i[d].stop is None else i[d].stop for i in index]
    block.append(slice(min(starts), max(stops)))
  return tuple(block)


def global_batch(shardings, shapes, local):
  """Assembles each leaf's global array from this process's block of it."""
  return jax.tree.map(
    lambda sh, shape, x: jax.make_array_from_process_local_data(sh, x, shape),
    shardings,
    shapes,
    local,
    is_leaf=lambda x: isinstance(x, tuple),
  )


def to_local(tree):
  """The whole tree on this process's first device (evaluation runs per process, unsharded)."""
  device = jax.local_devices()[0]
  if jax.process_count() > 1:
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_put(tree, device)


class Preempted(Exception):
  """The run was asked to stop (SIGTERM or a pod preemption); what finished is kept: a checkpoint
  holds a training stage's last step, and finished cells are saved."""


def stop_if_asked(where):
  """Raises Preempted once SIGTERM arrived, at a boundary outside training (an evaluation or
  geometry batch, a report section), so a stop comes within a batch's time. Single-process runs:
  a pod's preemption notice is synchronised at training steps only."""
  if _SIGTERM.is_set() and jax.process_count() == 1:
    raise Preempted(f"{where} stopped on SIGTERM; finished cells are kept.")


def handle_sigterm():
  """Single-process runs: SIGTERM asks for a checkpoint at the next step, then a clean exit."""
  if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, lambda *_: _SIGTERM.set())


def preempted(step):
  """True once the run should checkpoint and stop (SIGTERM, or a pod's preemption notice)."""
  if jax.process_count() > 1:
    # All processes reach the same answer at the same step (jax's preemption sync point).
    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
      return False
  return _SIGTERM.is_set()
