"""Training throughput per preset: tokens/s, model-FLOPs utilisation, and what packing buys.

  python -m experiments.bench                               # presets that fit the device
  python -m experiments.bench --presets=nano,micro --steps=5  # a few minutes on a 2-core CPU
  python -m experiments.bench --peak_flops=989e12           # MFU against a datasheet peak

Each preset runs the real packed training step (experiments.train, on a mesh over every device,
the batch placed as in training) on fixed random tokens, so data loading is not measured. MFU is
`tokens/s × ModelConfig.flops_per_token(T) / (peak × devices)`; without --peak_flops the peak is
measured with one large matmul in the compute dtype, which says so in the header. For presets of
at most --pack_max_params parameters it also trains K = --pack cells as one vmapped program and
reports their aggregate tokens/s over one cell's ("speedup"). Needs no ml_collections or pandas,
so it runs on a bare accelerator image.
"""
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import sharding, train
from models import get_config
from models.config import auto_attention_impl
from models.presets import PRESETS

_PRESETS = flags.DEFINE_list("presets", [], "Presets to time (default: nano..mini on CPU, all "
                             "elsewhere).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after 2 warm-up steps).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Rows per step and cell.")
_SEQ = flags.DEFINE_integer("seq_len", 112, "Tokens per row (the default world's data.seq_len).")
_VOCAB = flags.DEFINE_integer("vocab_size", 576, "Vocabulary size (a world's is ~500-600).")
_DTYPE = flags.DEFINE_enum("compute_dtype", "auto", ["auto", "float32", "bfloat16"],
                           "auto: bfloat16 on accelerators, float32 on CPU.")
_ATTENTION = flags.DEFINE_enum("attention_impl", "auto", ["auto", "xla", "cudnn"],
                               "auto: cuDNN on a GPU in bfloat16, else XLA.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s of one device (0: measure a matmul).")
_PACK = flags.DEFINE_integer("pack", 8, "Cells in the packed measurement (0: skip it).")
_PACK_MAX = flags.DEFINE_integer("pack_max_params", 2_000_000,
                                 "Pack only presets with at most this many parameters.")


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
  return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def time_pack(mcfg, n_cells, batch_size, steps, mesh):
  """Seconds per step of a pack of n_cells training together, after compilation."""
  tcfg = _TrainCfg()
  opt = train.make_optimizer(tcfg, steps + 2)
  graphdef, abstract = train.abstract_states(mcfg, n_cells)
  shape = (n_cells, batch_size, mcfg.max_len)
  shapes = {"base": {"tokens": shape, "mask": shape}}
  sh = sharding.PackShardings(mesh, sharding.DEFAULT_RULES, abstract,
                              jax.eval_shape(jax.vmap(opt.init), abstract), shapes)
  state = train.init_states(mcfg, list(range(n_cells)), sh)[1]
  opt_state = jax.jit(jax.vmap(opt.init), out_shardings=sh.opt_state)(state)
  tokens = np.random.default_rng(0).integers(3, mcfg.vocab_size, shape, dtype=np.int32)
  batch = {"base": {"tokens": sh.put(tokens, sh.batch["base"]["tokens"]),
                    "mask": sh.put(np.ones(shape, np.uint8), sh.batch["base"]["mask"])}}
  zeros, lr = sh.put(np.zeros(n_cells, np.float32)), sh.put(np.full(n_cells, 1e-3, np.float32))
  step = train.make_step(graphdef, opt, sh)
  for _ in range(2):  # compile, then one more so no first-call cost is timed
    state, opt_state, metrics = step(state, opt_state, batch, zeros, zeros, lr, None)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, opt_state, metrics = step(state, opt_state, batch, zeros, zeros, lr, None)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - t0) / steps


class _TrainCfg:
  """The optimizer fields of config.train, at their defaults (no ml_collections needed)."""
  warmup_steps, grad_clip, weight_decay = 2, 1.0, 0.1


def rows(presets, batch_size, seq_len, vocab, dtype, attention, steps, peak, pack, pack_max):
  """One dict per preset with the measured figures."""
  backend = jax.default_backend()
  mesh = jax.make_mesh((1, jax.device_count(), 1, 1), sharding.AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * 4)
  out = []
  for name in presets:
    probe = get_config(name, vocab, seq_len, compute_dtype=dtype)
    impl = auto_attention_impl(dtype, probe.head_dim, backend) if attention == "auto" else attention
    mcfg = get_config(name, vocab, seq_len, compute_dtype=dtype, attention_impl=impl)
    single = time_pack(mcfg, 1, batch_size, steps, mesh)
    tokens = batch_size * seq_len / single
    row = {"preset": name, "params": mcfg.n_params(non_embedding=False),
           "attention": impl or "xla", "step_ms": 1e3 * single, "tokens_s": tokens,
           "mfu": tokens * mcfg.flops_per_token(seq_len) / (peak * jax.device_count())}
    if pack > 1 and mcfg.n_params(non_embedding=False) <= pack_max:
      packed = time_pack(mcfg, pack, batch_size, steps, mesh)
      row.update(pack=pack, packed_tokens_s=pack * batch_size * seq_len / packed,
                 speedup=pack * single / packed)
    out.append(row)
  return out


def format_table(table):
  head = (f"{'preset':<8}{'params':>10}{'attention':>10}{'step ms':>10}{'tokens/s':>12}{'MFU':>8}"
          f"{'K':>4}{'packed tokens/s':>17}{'speedup':>9}")
  lines = [head]
  for r in table:
    packed = (f"{r['pack']:>4}{r['packed_tokens_s']:>17,.0f}{r['speedup']:>8.1f}x" if "pack" in r
              else f"{'—':>4}{'—':>17}{'—':>9}")
    lines.append(f"{r['preset']:<8}{r['params']:>10,}{r['attention']:>10}{r['step_ms']:>10.1f}"
                 f"{r['tokens_s']:>12,.0f}{100 * r['mfu']:>7.2f}%{packed}")
  return "\n".join(lines)


def main(argv):
  del argv
  backend = jax.default_backend()
  dtype = _DTYPE.value if _DTYPE.value != "auto" else (
      "float32" if backend == "cpu" else "bfloat16")
  presets = _PRESETS.value or (["nano", "micro", "mini"] if backend == "cpu" else list(PRESETS))
  for p in presets:
    if p not in PRESETS:
      raise app.UsageError(f"--presets contains {p!r}: allowed are {', '.join(PRESETS)}.")
  peak = _PEAK.value or measured_peak(dtype, backend)
  source = "given" if _PEAK.value else "measured matmul"
  print(f"{jax.device_count()} × {jax.devices()[0].device_kind} ({backend}), {dtype}, batch "
        f"{_BATCH.value} × {_SEQ.value} tokens per cell, peak {peak:.3g} FLOP/s per device "
        f"({source}), {_STEPS.value} timed steps", flush=True)
  table = rows(presets, _BATCH.value, _SEQ.value, _VOCAB.value, dtype, _ATTENTION.value,
               _STEPS.value, peak, _PACK.value, _PACK_MAX.value)
  print(format_table(table))


if __name__ == "__main__":
  app.run(main)
