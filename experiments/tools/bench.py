"""Training throughput per preset: tokens/s, model-FLOPs utilisation, and what packing buys.

  python -m experiments.tools.bench                               # presets that fit the device
  python -m experiments.tools.bench --presets=nano,micro --steps=5 --repeats=1  # a minute on 2 CPU cores
  python -m experiments.tools.bench --peak_flops=989e12           # MFU against a datasheet peak
  python -m experiments.tools.bench --anchor=.bench/plain_jax_anchor.py  # beside the plain-JAX reference
  python -m experiments.tools.bench --presets=nano,micro --pack=0 --packing_people=0  # + LoRA vs full

Each preset runs the real packed training step (experiments.train, on a mesh over every device,
the batch placed as in training) on fixed random tokens, so data loading is not measured. MFU is
`tokens/s × ModelConfig.flops_per_token(T) / (peak × devices)`; without --peak_flops the peak is
measured with one large matmul in the compute dtype, which says so in the header. For presets of
at most --pack_max_params parameters it also trains K = --pack cells as one program, members
vmapped and then looped (experiments/runtime/members.py), and reports the vmapped aggregate
tokens/s over one cell's ("speedup") and the looped over the vmapped ("loop/vmap": a pack's
cells run looped on a CPU). Every figure is the median of
--repeats rounds (one cell, then the pack, each beside the reference). With --lora_rank > 0 it also times
a persona-phase step that updates every parameter beside one that updates only rank-r adapters on
every projection (the `lora` regime), alternating within each round. Needs no ml_collections or
pandas, so it runs on a bare accelerator image.

On a CPU the process keeps freed memory for reuse as training does
(experiments/runtime/host_memory.py); --nokeep_freed_memory times glibc's defaults instead.

--anchor names a plain-JAX reference module, kept in an ignored folder such as .bench/ (it defines
big() and tiny(), the reference's training steps at a given shape): it is timed in the same process on each preset's own shape (vocabulary, width,
depth, heads, tokens, batch, K and attention kernel), and the table gains the ratio of ours to it,
for one cell and for the packed cells against the reference's vmapped aggregate. Figures from
different processes do not compare; these do. The reference computes in bfloat16, so with an
anchor `--compute_dtype=auto` means bfloat16 on every backend.
"""

import dataclasses
import importlib.util
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import data, train
from experiments.configs.mesh_rules import DEFAULT_RULES
from experiments.runtime import host_memory, members, sharding
from models import get_config
from models.config import ATTENTION_CHOICES, LORA_TARGETS, resolve_attention_impl
from models.presets import PRESETS

_PRESETS = flags.DEFINE_list(
  "presets", [], "Presets to time (default: nano..mini on CPU, all elsewhere)."
)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after 2 warm-up steps).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Rows per step and cell.")
_SEQ = flags.DEFINE_integer(
  "seq_len",
  112,
  "Tokens per row (the default world's data.seq_len); "
  "the model reads seq_len - 1 of them and predicts the next of each.",
)
_VOCAB = flags.DEFINE_integer("vocab_size", 576, "Vocabulary size (a world's is ~500-600).")
_DTYPE = flags.DEFINE_enum(
  "compute_dtype",
  "auto",
  ["auto", "float32", "bfloat16"],
  "auto: bfloat16 on accelerators, float32 on CPU (bfloat16 with "
  "--anchor, as the reference computes).",
)
_ATTENTION = flags.DEFINE_enum(
  "attention_impl", "auto", list(ATTENTION_CHOICES), "auto: cuDNN on a GPU in bfloat16, else XLA."
)
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s of one device (0: measure a matmul).")
_PACK = flags.DEFINE_integer("pack", 8, "Cells in the packed measurement (0: skip it).")
_PACK_MAX = flags.DEFINE_integer(
  "pack_max_params", 2_000_000, "Pack only presets with at most this many parameters."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds per figure; the table shows medians.")
_PACKING = flags.DEFINE_integer(
  "packing_people",
  24,
  "Also time sequence packing on the base rows of a world with this many people (0: skip).",
)
_KEEP_FREED = flags.DEFINE_bool(
  "keep_freed_memory",
  True,
  "On a CPU, keep freed host memory for reuse, as training does (False: glibc's defaults).",
)
_LORA_RANK = flags.DEFINE_integer(
  "lora_rank",
  8,
  "Also time a persona-phase step with rank-r "
  "adapters on every projection against a full update (0: skip).",
)
_ANCHOR = flags.DEFINE_string(
  "anchor",
  None,
  "Path of plain_jax_anchor.py to time beside each "
  "preset on the same shape (default: no reference).",
)


def measured_peak(dtype, backend):
  """FLOP/s of one large square matmul on the first device: a practical ceiling."""
  n = 1024 if backend == "cpu" else 8192
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  reps = 3 if backend == "cpu" else 20
  t0 = time.perf_counter()
  for _ in range(reps):
    out = f(a)
  out.block_until_ready()
  return 2 * n**3 * reps / (time.perf_counter() - t0)


def data_mesh():
  """Every device on the data axis: the mesh a default run trains on."""
  return jax.make_mesh(
    (1, jax.device_count(), 1, 1), sharding.AXES, axis_types=(jax.sharding.AxisType.Auto,) * 4
  )


def time_pack(mcfg, n_cells, batch_size, steps, mesh, members_mode="auto"):
  """Seconds per step of a pack of n_cells training together on random tokens, after compiling;
  members_mode: vmapped or looped members (experiments/runtime/members.py)."""
  shape = (n_cells, batch_size, mcfg.max_len)
  tokens = np.random.default_rng(0).integers(3, mcfg.vocab_size, shape, dtype=np.int32)
  members.configure(members_mode)
  try:
    return time_batches(
      mcfg, [{"base": {"tokens": tokens, "mask": np.ones(shape, np.uint8)}}], steps, mesh
    )
  finally:
    members.configure("auto")


def time_batches(mcfg, batches, steps, mesh, update="full"):
  """Seconds per step on `batches` (host {part: {field: [E, B, ...]}}), cycled: the base stage's
  step on base rows alone, the persona phase's (λ = 1) when a batch has persona rows; `update`:
  every parameter (full) or only mcfg's adapters (lora)."""
  n_cells = batches[0]["base"]["tokens"].shape[0]
  opt = train.make_optimizer(_TrainCfg(), steps + 2)
  graphdef, abstract = train.abstract_states(mcfg, n_cells)
  shapes = {part: {k: v.shape for k, v in fields.items()} for part, fields in batches[0].items()}
  abstract_opt = jax.eval_shape(jax.vmap(train.member_init(opt, update)), abstract)
  sh = sharding.PackShardings(mesh, DEFAULT_RULES, abstract, abstract_opt, shapes)
  state = train.init_states(mcfg, list(range(n_cells)), sh)[1]
  opt_state = train.init_optimizer(opt, state, update, sh.opt_state)
  placed = [
    {
      part: {k: sh.put(v, sh.batch[part][k]) for k, v in fields.items()}
      for part, fields in b.items()
    }
    for b in batches
  ]
  lam = np.full(n_cells, 1.0 if "persona" in batches[0] else 0.0, np.float32)
  inputs = sh.put_inputs(
    {"lam": lam, "rho": np.zeros(n_cells, np.float32), "lr": np.full(n_cells, 1e-3, np.float32)}
  )
  step = train.make_step(graphdef, opt, train.imitation_loss, sh, inputs, update)
  for k in range(2):  # compile, then one more so no first-call cost is timed
    state, opt_state, metrics = step(state, opt_state, placed[k % len(placed)], inputs)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for k in range(steps):
    state, opt_state, metrics = step(state, opt_state, placed[k % len(placed)], inputs)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - t0) / steps


def persona_batch(mcfg, batch_size):
  """One persona-phase batch of random tokens: half base rows, half persona rows (one cell)."""
  rng = np.random.default_rng(0)
  half = (1, batch_size // 2)
  rows = lambda: rng.integers(3, mcfg.vocab_size, half + (mcfg.max_len,), dtype=np.int32)
  ones = np.ones(half + (mcfg.max_len,), np.uint8)
  tokens = rows()
  return {
    "base": {"tokens": rows(), "mask": ones},
    "persona": {
      "tokens": tokens,
      "mask": ones,
      "alt_tokens": tokens,
      "alt_mask": ones,
      "has_alt": np.zeros(half, bool),
      "u": np.zeros(half, np.float32),
    },
  }


def persona_update_rows(presets, batch_size, seq_len, vocab, dtype, steps, mesh, repeats, rank):
  """Per preset, a persona-phase step updating every parameter against one updating rank-`rank`
  adapters on every projection (the base frozen): medians of `repeats` rounds, the two timed
  side by side in each round, and the median of the rounds' ratios."""
  out = []
  for name in presets:
    full_cfg = get_config(name, vocab, seq_len, compute_dtype=dtype)
    lora_cfg = dataclasses.replace(full_cfg, lora_rank=rank, lora_targets=LORA_TARGETS)
    batch = [persona_batch(full_cfg, batch_size)]
    rounds = [
      (
        time_batches(full_cfg, batch, steps, mesh, "full"),
        time_batches(lora_cfg, batch, steps, mesh, "lora"),
      )
      for _ in range(repeats)
    ]
    adapters = jax.eval_shape(lambda k: train.new_adapters(lora_cfg, k), train.adapter_keys([0]))
    out.append(
      {
        "preset": name,
        "params": full_cfg.n_params(non_embedding=False),
        "trained": sum(a.size for a in jax.tree.leaves(adapters)),
        "rank": rank,
        "full_ms": 1e3 * float(np.median([f for f, _ in rounds])),
        "lora_ms": 1e3 * float(np.median([l for _, l in rounds])),
        "lora_vs_full": float(np.median([l / f for f, l in rounds])),
      }
    )
  return out


_PERSONA_COLUMNS = [
  ("preset", "preset", 8, ""),
  ("params", "params", 12, ","),
  ("LoRA rank", "rank", 11, ""),
  ("adapter params", "trained", 16, ","),
  ("full step ms", "full_ms", 14, ".1f"),
  ("LoRA step ms", "lora_ms", 14, ".1f"),
  ("LoRA/full", "lora_vs_full", 11, ".2f"),
]


def format_persona_updates(table):
  return fixed_width(_PERSONA_COLUMNS, table)


def world_batches(corpus, batch_size, n_batches, pack_sequences):
  """The base stage's first n_batches batches of one cell (seed 0), packed or one example a row."""
  read = corpus.packed_batch if pack_sequences else corpus.batch
  fields = data.BASE_FIELDS + (data.PACKED_FIELDS if pack_sequences else ())
  out = []
  for step in range(n_batches):
    rows = read("base", 0, step, batch_size)
    out.append({"base": {k: rows[k][None] for k in fields}})
  return out


def packing_rows(presets, corpus, batch_size, dtype, steps, mesh, repeats):
  """Loss-bearing tokens/s of the base step on the world's real rows, packed and unpacked.

  Both read the same stream (seed 0, steps 0..7) in the same process, alternating within each
  round; the speedup is the median of the rounds' ratios.
  """
  out = []
  batches = {p: world_batches(corpus, batch_size, 8, p) for p in (False, True)}
  # A loss-bearing token is a predicted position whose target carries loss.
  loss_tokens = {
    p: np.mean([b["base"]["mask"][..., 1:].sum() for b in bs]) for p, bs in batches.items()
  }
  fill = {
    p: np.mean([(b["base"]["tokens"] != corpus.tokenizer.pad).mean() for b in bs])
    for p, bs in batches.items()
  }
  for name in presets:
    mcfg = get_config(name, corpus.tokenizer.size, corpus.seq_len, compute_dtype=dtype)
    rounds = []
    for _ in range(repeats):
      rounds.append(
        {p: loss_tokens[p] / time_batches(mcfg, batches[p], steps, mesh) for p in (False, True)}
      )
    med = lambda f: float(np.median([f(r) for r in rounds]))
    out.append(
      {
        "preset": name,
        "fill_unpacked": fill[False],
        "fill_packed": fill[True],
        "loss_tokens_s": med(lambda r: r[False]),
        "packed_loss_tokens_s": med(lambda r: r[True]),
        "speedup": med(lambda r: r[True] / r[False]),
      }
    )
  return out


_PACKING_COLUMNS = [
  ("preset", "preset", 8, ""),
  ("fill", "fill_unpacked", 8, ".2f"),
  ("packed fill", "fill_packed", 13, ".2f"),
  ("loss tokens/s", "loss_tokens_s", 15, ",.0f"),
  ("packed", "packed_loss_tokens_s", 12, ",.0f"),
  ("speedup", "speedup", 9, ".2f"),
]


def format_packing(table):
  return fixed_width(_PACKING_COLUMNS, table)


class _TrainCfg:
  """The optimizer fields of config.train, at their defaults (no ml_collections needed)."""

  warmup_steps, grad_clip, weight_decay = 2, 1.0, 0.1


def load_anchor(path):
  """The reference module at `path`, which must define big() and tiny() as the shared anchor does."""
  spec = importlib.util.spec_from_file_location("plain_jax_anchor", path)
  if spec is None:
    raise ValueError(f"--anchor={path!r} must be the path of a Python file.")
  module = importlib.util.module_from_spec(spec)
  argv, sys.argv = sys.argv, [path]  # the reference reads an optional peak from sys.argv[1]
  try:
    spec.loader.exec_module(module)
  finally:
    sys.argv = argv
  missing = [f for f in ("big", "tiny") if not callable(getattr(module, f, None))]
  if missing:
    raise ValueError(
      f"--anchor={path!r} must define {' and '.join(missing)}(), the reference's training steps."
    )
  return module


def anchor_shape(mcfg, batch_size, seq_len, steps):
  """The reference's keyword arguments for this preset's shape.

  Its T is the number of positions the model reads, so rows of seq_len tokens are T = seq_len - 1.
  """
  if mcfg.d_ff != 4 * mcfg.d_model:
    raise ValueError(
      f"a preset with d_ff={mcfg.d_ff} cannot be compared: the reference only "
      f"builds d_ff = 4·d_model = {4 * mcfg.d_model}."
    )
  return dict(
    V=mcfg.vocab_size,
    d=mcfg.d_model,
    L=mcfg.n_layers,
    H=mcfg.n_heads,
    T=seq_len - 1,
    B=batch_size,
    n=steps,
  )


def measure(mcfg, batch_size, seq_len, steps, mesh, pack, anchor):
  """Tokens/s of one round, ours and the reference's side by side: one cell, then K packed."""
  positions = seq_len - 1
  out = {"tokens_s": batch_size * positions / time_pack(mcfg, 1, batch_size, steps, mesh)}
  if anchor is not None:
    anchor.IMPL = mcfg.attention_impl  # the same attention kernel as ours
    shape = anchor_shape(mcfg, batch_size, seq_len, steps)
    out["ref_tokens_s"] = anchor.big(**shape)["tokens_per_s"]
  if pack > 1:
    for mode, key in (("vmap", "packed_tokens_s"), ("loop", "looped_tokens_s")):
      out[key] = (
        pack * batch_size * positions / time_pack(mcfg, pack, batch_size, steps, mesh, mode)
      )
    if anchor is not None:
      out["ref_packed_tokens_s"] = anchor.tiny(K=pack, **shape)["vmapped_tokens_per_s"]
  return out


def rows(
  presets,
  batch_size,
  seq_len,
  vocab,
  dtype,
  attention,
  steps,
  peak,
  pack,
  pack_max,
  anchor=None,
  repeats=1,
):
  """One dict per preset with the measured figures (and the reference's, given an anchor).

  A token is a predicted position: a row of seq_len tokens trains on seq_len - 1 of them. Each
  figure is the median of `repeats` rounds; ours and the reference's alternate within a round, and
  a ratio is the median of the rounds' ratios, so slow drift on a shared machine cancels.
  """
  backend = jax.default_backend()
  mesh = data_mesh()
  out = []
  for name in presets:
    probe = get_config(name, vocab, seq_len, compute_dtype=dtype)
    impl = resolve_attention_impl(attention, dtype, probe.head_dim, backend)
    mcfg = get_config(name, vocab, seq_len, compute_dtype=dtype, attention_impl=impl)
    if anchor is not None:
      anchor_shape(mcfg, batch_size, seq_len, steps)  # refuse before spending time on ours
    k = pack if pack > 1 and mcfg.n_params(non_embedding=False) <= pack_max else 0
    rounds = [measure(mcfg, batch_size, seq_len, steps, mesh, k, anchor) for _ in range(repeats)]
    med = lambda f: float(np.median([f(r) for r in rounds]))
    tokens = med(lambda r: r["tokens_s"])
    row = {
      "preset": name,
      "params": mcfg.n_params(non_embedding=False),
      "attention": impl or "xla",
      "step_ms": 1e3 * batch_size * (seq_len - 1) / tokens,
      "tokens_s": tokens,
      "repeats": repeats,
      "mfu": tokens * mcfg.flops_per_token(seq_len - 1) / (peak * jax.device_count()),
    }
    if k:
      row.update(
        pack=k,
        packed_tokens_s=med(lambda r: r["packed_tokens_s"]),
        speedup=med(lambda r: r["packed_tokens_s"] / r["tokens_s"]),
        looped_tokens_s=med(lambda r: r["looped_tokens_s"]),
        loop_vs_vmap=med(lambda r: r["looped_tokens_s"] / r["packed_tokens_s"]),
      )
    if anchor is not None:
      row.update(
        ref_tokens_s=med(lambda r: r["ref_tokens_s"]),
        vs_ref=med(lambda r: r["tokens_s"] / r["ref_tokens_s"]),
      )
      if k:
        row.update(
          ref_packed_tokens_s=med(lambda r: r["ref_packed_tokens_s"]),
          packed_vs_ref=med(lambda r: r["packed_tokens_s"] / r["ref_packed_tokens_s"]),
        )
    out.append(row)
  return out


# (header, row key, width, format) per column; a row without the key shows a dash.
_COLUMNS = [
  ("preset", "preset", 8, ""),
  ("params", "params", 12, ","),
  ("attention", "attention", 10, ""),
  ("step ms", "step_ms", 9, ".1f"),
  ("tokens/s", "tokens_s", 12, ",.0f"),
  ("MFU %", "mfu_pct", 7, ".2f"),
  ("ref tokens/s", "ref_tokens_s", 14, ",.0f"),
  ("vs ref", "vs_ref", 8, ".2f"),
  ("K", "pack", 4, ""),
  ("packed tokens/s", "packed_tokens_s", 17, ",.0f"),
  ("speedup", "speedup", 9, ".2f"),
  ("looped tokens/s", "looped_tokens_s", 17, ",.0f"),
  ("loop/vmap", "loop_vs_vmap", 11, ".2f"),
  ("ref packed", "ref_packed_tokens_s", 14, ",.0f"),
  ("vs ref", "packed_vs_ref", 8, ".2f"),
]
_REFERENCE_KEYS = ("ref_tokens_s", "vs_ref", "ref_packed_tokens_s", "packed_vs_ref")


def fixed_width(columns, table):
  """Rows as a fixed-width table: (header, row key, width, format) per column, the preset left
  aligned, a row without the key shown as a dash."""
  lines = ["".join(f"{h:<{w}}" if k == "preset" else f"{h:>{w}}" for h, k, w, _ in columns)]
  for r in table:
    lines.append(
      "".join(
        f"{r[k]:<{w}{f}}" if k == "preset" else f"{r[k]:>{w}{f}}" if k in r else f"{'—':>{w}}"
        for _, k, w, f in columns
      )
    )
  return "\n".join(lines)


def format_table(table):
  """The throughput table; the reference's columns only when some row has them."""
  cols = [c for c in _COLUMNS if c[1] not in _REFERENCE_KEYS or any(c[1] in r for r in table)]
  return fixed_width(cols, [dict(r, mfu_pct=100 * r["mfu"]) for r in table])


def main(argv):
  del argv
  backend = jax.default_backend()
  if backend == "cpu" and _KEEP_FREED.value:
    host_memory.keep_freed_memory()
  try:
    anchor = load_anchor(_ANCHOR.value) if _ANCHOR.value else None
  except (OSError, ValueError) as e:  # a missing file is an OSError from exec_module
    raise app.UsageError(
      str(e)
      if isinstance(e, ValueError)
      else f"--anchor={_ANCHOR.value!r} must name a readable file ({e})."
    ) from e
  if anchor is not None and jax.device_count() > 1:
    raise app.UsageError(
      f"--anchor needs one device (the reference is a single-device program); "
      f"JAX sees {jax.device_count()}."
    )
  dtype = (
    _DTYPE.value
    if _DTYPE.value != "auto"
    else ("float32" if backend == "cpu" and anchor is None else "bfloat16")
  )
  presets = _PRESETS.value or (["nano", "micro", "mini"] if backend == "cpu" else list(PRESETS))
  if _REPEATS.value < 1:
    raise app.UsageError(f"--repeats={_REPEATS.value} must be at least 1.")
  if _SEQ.value < 2:
    raise app.UsageError(f"--seq_len={_SEQ.value} must be at least 2 (one position to predict).")
  for p in presets:
    if p not in PRESETS:
      raise app.UsageError(f"--presets contains {p!r}: allowed are {', '.join(PRESETS)}.")
  peak = _PEAK.value or measured_peak(dtype, backend)
  source = "given" if _PEAK.value else "measured matmul"
  print(
    f"{jax.device_count()} × {jax.devices()[0].device_kind} ({backend}), {dtype}, batch "
    f"{_BATCH.value} × {_SEQ.value} tokens per cell ({_SEQ.value - 1} predicted), peak "
    f"{peak:.3g} FLOP/s per device ({source}), medians of {_REPEATS.value} rounds of "
    f"{_STEPS.value} timed steps",
    flush=True,
  )
  try:
    table = rows(
      presets,
      _BATCH.value,
      _SEQ.value,
      _VOCAB.value,
      dtype,
      _ATTENTION.value,
      _STEPS.value,
      peak,
      _PACK.value,
      _PACK_MAX.value,
      anchor,
      _REPEATS.value,
    )
  except ValueError as e:  # a model config or a shape the reference cannot build
    raise app.UsageError(str(e)) from e
  print(format_table(table))
  if _LORA_RANK.value:
    print(
      f"\npersona phase (λ = 1, {_BATCH.value // 2} base + {_BATCH.value // 2} persona rows, "
      "one cell): every parameter updated against low-rank adapters alone, timed side by side",
      flush=True,
    )
    print(
      format_persona_updates(
        persona_update_rows(
          presets,
          _BATCH.value,
          _SEQ.value,
          _VOCAB.value,
          dtype,
          _STEPS.value,
          data_mesh(),
          _REPEATS.value,
          _LORA_RANK.value,
        )
      )
    )
  if _PACKING.value:
    from tasks.config import WorldConfig  # pylint: disable=g-import-not-at-top
    from tasks.mixtures import Corpus  # pylint: disable=g-import-not-at-top

    corpus = Corpus(WorldConfig(n_people=_PACKING.value))
    print(
      f"\nsequence packing: loss-bearing tokens/s of the base step on the real rows of a world "
      f"of {_PACKING.value} people ({_BATCH.value} rows of {corpus.seq_len}), one example per "
      "row against several (fill: share of token slots holding an example)",
      flush=True,
    )
    print(
      format_packing(
        packing_rows(
          presets, corpus, _BATCH.value, dtype, _STEPS.value, data_mesh(), _REPEATS.value
        )
      )
    )


if __name__ == "__main__":
  app.run(main)
