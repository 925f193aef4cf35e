"""Multi-process runs: start-up, who writes, the shared plan, global batches from local rows, and
how a stop reaches every process.

Every process runs the same program (SPMD). Each builds only the batch rows and members its own
devices hold and contributes them with `jax.make_array_from_process_local_data`; process 0 alone
writes files; decisions read from disk (which cells are finished) are taken by process 0 and
broadcast, so all processes follow the same plan even without a shared file system.

A SIGTERM to any one process stops them all. At training steps every process's flag is combined
collectively (preempted), so all stop at the same step and save one checkpoint together. Between
training stages process 0 works alone (evaluation, the summary, the report) while the others wait
for it in the next collective: there process 0 reads the coordination service's key-value store,
where a process that got SIGTERM says so (stop_if_asked); once stopped, process 0 says so there in
turn, and the others, which would wait for it for ever, exit.
"""

import atexit
import os
import select
import signal
import socket
import sys
import threading

from absl import logging
import jax
from jax._src import distributed as jax_distributed
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


# Key-value store prefixes: `_ASKED<index>` once that process got SIGTERM, `_STOPPED0` once process
# 0 stopped (the value says why).
_ASKED = "warmth_sim/sigterm/"
_STOPPED = "warmth_sim/stopped/"
_POLL_SECONDS = 1.0
# How long a process that stopped at the same training step as process 0 has to exit by itself.
_GRACE_SECONDS = 30.0


class _State:
  """What this process knows of a stop; the main thread and the watcher thread share it."""

  stopping = threading.Event()  # this process decided to stop
  reason = None  # why, for the other processes
  exiting = threading.Event()  # the main thread is past the program, in the exit handlers
  exit_lock = threading.Lock()  # held by whoever ends the process: the main thread or the watcher
  warned = False  # that jax's preemption service does not answer
  wakeup = None  # the signal socket's write end, kept open for the life of the process


def _client():
  """The coordination service's client, or None (one process, or after shutdown)."""
  return jax_distributed.global_state.client


def _key_value_dir(prefix):
  """[(key, value)] under `prefix` in the coordination service; [] when it cannot answer."""
  client = _client()
  if client is None:
    return []
  try:
    return client.key_value_dir_get(prefix)
  except Exception:  # pylint: disable=broad-except  (a service going away reads as no news)
    return []


def _publish(key, value):
  """Sets `key` in the coordination service; False if it cannot (it went away)."""
  client = _client()
  if client is None:
    return False
  try:
    client.key_value_set(key, value, allow_overwrite=True)
    return True
  except Exception:  # pylint: disable=broad-except
    return False


def _stop(reason):
  """Notes that this process stops, and the first reason, which process 0 passes on."""
  if not _State.stopping.is_set():
    _State.reason = reason
    _State.stopping.set()


def stop_if_asked(where):
  """Raises Preempted once SIGTERM arrived, at a boundary outside training (an evaluation or
  geometry batch, a report section), so a stop comes within a batch's time.

  Multi-process runs: only process 0 stops here, on its own SIGTERM or on one another process got
  (the coordination service says which, one look per call); the others follow it out (module
  docstring). A pod's preemption notice is synchronised at training steps only."""
  asked = {0} if _SIGTERM.is_set() else set()
  if jax.process_count() > 1:
    if not is_writer():
      return
    asked |= {int(k.rsplit("/", 1)[-1]) for k, _ in _key_value_dir(_ASKED)}
  if not asked:
    return
  who = "" if jax.process_count() == 1 else f" to process {', '.join(map(str, sorted(asked)))}"
  message = f"{where} stopped on SIGTERM{who}; finished cells are kept."
  _stop(message)
  raise Preempted(message)


def handle_sigterm():
  """SIGTERM asks for a checkpoint at the next training step, or a stop at the next batch outside
  training, then a clean exit: of every process of a multi-process run, whichever one got it."""
  if threading.current_thread() is not threading.main_thread():
    return  # Python lets only the main thread install handlers
  signal.signal(signal.SIGTERM, lambda *_: _SIGTERM.set())
  if jax.process_count() > 1 and _State.wakeup is None:
    _watch()


def _watch():
  """Starts the thread that tells the other processes of this one's SIGTERM and, on processes
  other than 0, ends this one once process 0 has stopped.

  A Python signal handler runs in the main thread between bytecodes, so not while that waits in a
  collective, which is for ever if process 0 stopped meanwhile; the signal's number also goes to a
  socket (signal.set_wakeup_fd) at once, from C, and the thread reads it there."""
  read, write = socket.socketpair()
  write.setblocking(False)  # set_wakeup_fd refuses a blocking one: a signal handler must not wait
  signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
  _State.wakeup = write
  # Registered after jax's own exit handler, so it runs before jax's shutdown (last in, first out).
  atexit.register(_at_exit)
  threading.Thread(
    target=_watcher, args=(read, jax.process_index()), daemon=True, name="sigterm-watcher"
  ).start()


def _watcher(read, index):
  """Reads signal numbers from `read` and polls the coordination service, once a second."""
  told = False
  while True:
    if select.select([read], [], [], _POLL_SECONDS)[0] and signal.SIGTERM in read.recv(256):
      _SIGTERM.set()
    if _SIGTERM.is_set() and not told:
      told = _publish(f"{_ASKED}{index}", "SIGTERM")
    stopped = _key_value_dir(_STOPPED) if index != 0 else []
    if stopped:
      if _State.stopping.is_set():
        _State.exiting.wait(_GRACE_SECONDS)
      _follow(stopped[0][1])
      return


def _follow(reason):
  """Ends a process other than 0 after process 0 stopped, unless it is ending by itself: it then
  waits in a collective process 0 will not join, or is about to, so leaving loses nothing. Its
  coordination client shuts down first, which lets process 0's own shutdown end at once."""
  with _State.exit_lock:
    if _State.exiting.is_set():
      return
    logging.warning("process 0 stopped the run: %s", reason)
    print(f"stopped: as process 0 did: {reason} Rerun the same command to resume.", file=sys.stderr)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
      jax.distributed.shutdown()
    finally:
      os._exit(1)  # the main thread may be inside C code, which nothing else ends


def _at_exit():
  """From here the main thread ends the process; process 0 tells the others if it stopped."""
  with _State.exit_lock:  # not while the watcher ends the process
    _State.exiting.set()
  if is_writer() and _State.stopping.is_set():
    _publish(f"{_STOPPED}0", _State.reason)


def _preemption_notice(step):
  """jax's preemption sync point (the same answer on every process at `step`); False with a
  warning, once, when the preemption service does not answer: SIGTERM then stops the run alone."""
  try:
    return bool(multihost_utils.reached_preemption_sync_point(step))
  except RuntimeError as e:  # jax_enable_preemption_service is off, or the query failed
    if not _State.warned:
      _State.warned = True
      logging.warning(
        "jax's preemption service does not answer (%s); a stop comes from SIGTERM alone.", e
      )
    return False


def _asked_anywhere():
  """True on every process if any process got SIGTERM (a collective: all call it together)."""
  return bool(np.max(multihost_utils.process_allgather(np.int32(_SIGTERM.is_set()))))


def preempted(step):
  """True once the run should checkpoint and stop (SIGTERM, or a pod's preemption notice).

  Multi-process runs: every process calls it at every step and gets the same answer, so all save
  the same step together; a SIGTERM to any one of them counts."""
  if jax.process_count() == 1:
    stop = _SIGTERM.is_set()
  else:
    notice = _preemption_notice(step)
    stop = _asked_anywhere() or notice  # the collective first: every process takes part in it
  if stop:
    _stop(f"training stopped at step {step}.")
  return stop
