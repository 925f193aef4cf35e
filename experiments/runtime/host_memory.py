"""Keeps freed host memory in the process, so XLA's CPU backend does not page it in every step.

XLA on a CPU allocates a step's temporary buffers with malloc and frees them when the step ends.
glibc serves blocks above its mmap threshold (128 KiB at first) with a fresh mmap and returns them
with munmap, and trims the heap's top above its trim threshold: each step the kernel then zero-fills
the same megabytes again, page by page. On a 2-core machine a third of a run's CPU time was system
time, and a small model's training step ran 1.5-2.4× slower than with the thresholds raised.
`keep_freed_memory` raises both (glibc's `mallopt`, the same as MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ in the environment), so freed blocks stay in the heap for the next step.
The cost is a resident size that stays at its peak rather than shrinking between steps.
Elsewhere (another C library, macOS) it does nothing.
"""

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes: blocks up to 1 GiB come from the heap and stay there when freed


def keep_freed_memory(threshold=THRESHOLD):
  """Raises glibc's mmap and trim thresholds to `threshold`; True if glibc took both."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
