"""The throughput bench runs the real packed step, reports sane figures, and times a reference."""

import subprocess
import sys
import textwrap

import pytest

from experiments.tools import bench

# A stand-in for the plain-JAX reference module (--anchor) that records the shapes it was asked for and
# reports fixed throughputs, so the ratios the bench prints can be checked exactly.
_FAKE_ANCHOR = textwrap.dedent("""
    import sys
    PEAK = float(sys.argv[1]) if len(sys.argv) > 1 else 989e12  # as the real one reads it
    IMPL = 'unset'
    calls = []
    def big(V, d, L, H, T, B, n):
      calls.append(('big', dict(V=V, d=d, L=L, H=H, T=T, B=B, impl=IMPL)))
      return {'tokens_per_s': 1000.0}
    def tiny(K, V, d, L, H, T, B, n):
      calls.append(('tiny', dict(K=K, V=V, d=d, L=L, H=H, T=T, B=B, impl=IMPL)))
      return {'vmapped_tokens_per_s': 4000.0}
""")


def test_bench_rows_and_table():
  table = bench.rows(
    ["nano"],
    batch_size=4,
    seq_len=16,
    vocab=64,
    dtype="float32",
    attention="auto",
    steps=1,
    peak=1e12,
    pack=2,
    pack_max=10**9,
  )
  (row,) = table
  assert row["preset"] == "nano" and row["attention"] == "xla"  # cuDNN only on a GPU in bf16
  assert row["tokens_s"] > 0 and 0 < row["mfu"] < 1 and row["pack"] == 2 and row["speedup"] > 0
  text = bench.format_table(table)
  assert "packed tokens/s" in text and "looped tokens/s" in text
  assert text.splitlines()[1].startswith("nano") and row["looped_tokens_s"] > 0
  assert "ref tokens/s" not in text  # no reference, no reference columns


def test_figures_are_medians_of_rounds_counting_predicted_positions(monkeypatch):
  # Seconds per step for (cells, members, round): round 1 is disturbed, the median ignores it.
  seconds = {
    (1, "auto", 0): 0.5,
    (2, "vmap", 0): 0.5,
    (2, "loop", 0): 0.2,
    (1, "auto", 1): 5.0,
    (2, "vmap", 1): 0.25,
    (2, "loop", 1): 0.25,
    (1, "auto", 2): 0.5,
    (2, "vmap", 2): 0.5,
    (2, "loop", 2): 0.25,
  }
  calls = []

  def fake_time_pack(mcfg, n_cells, batch_size, steps, mesh, members_mode="auto"):
    calls.append((n_cells, members_mode))
    return seconds[n_cells, members_mode, calls.count((n_cells, members_mode)) - 1]

  monkeypatch.setattr(bench, "time_pack", fake_time_pack)
  (row,) = bench.rows(
    ["nano"],
    batch_size=4,
    seq_len=16,
    vocab=64,
    dtype="float32",
    attention="auto",
    steps=1,
    peak=1e12,
    pack=2,
    pack_max=10**9,
    repeats=3,
  )
  # One cell, then the pack vmapped and looped, round by round.
  assert calls == [(1, "auto"), (2, "vmap"), (2, "loop")] * 3
  # 4 rows × 15 predicted positions (a 16-token row predicts 15) per 0.5 s.
  assert row["tokens_s"] == 120.0 and row["step_ms"] == 500.0 and row["repeats"] == 3
  assert row["packed_tokens_s"] == 2 * 60 / 0.5
  assert row["speedup"] == 2.0  # the rounds' ratios are 2, 40 and 2
  assert row["looped_tokens_s"] == 2 * 60 / 0.25
  assert row["loop_vs_vmap"] == 2.0  # the rounds' ratios are 2.5, 1 and 2


def test_anchor_runs_on_each_presets_shape(tmp_path, monkeypatch):
  path = tmp_path / "anchor.py"
  path.write_text(_FAKE_ANCHOR)
  monkeypatch.setattr(sys, "argv", ["bench", "--presets=nano"])  # must not reach the anchor
  anchor = bench.load_anchor(str(path))
  assert anchor.PEAK == 989e12 and sys.argv == ["bench", "--presets=nano"]
  (row,) = bench.rows(
    ["nano"],
    batch_size=4,
    seq_len=16,
    vocab=64,
    dtype="float32",
    attention="auto",
    steps=1,
    peak=1e12,
    pack=3,
    pack_max=10**9,
    anchor=anchor,
  )
  # nano: d_model 32, 2 layers, 2 heads; rows of 16 tokens are 15 positions; XLA attention.
  shape = dict(V=64, d=32, L=2, H=2, T=15, B=4, impl=None)
  assert anchor.calls == [("big", shape), ("tiny", dict(shape, K=3))]
  assert row["ref_tokens_s"] == 1000.0 and row["vs_ref"] == pytest.approx(row["tokens_s"] / 1000)
  assert row["packed_vs_ref"] == pytest.approx(row["packed_tokens_s"] / 4000)
  header = bench.format_table([row]).splitlines()[0]
  assert "ref tokens/s" in header and "ref packed" in header and header.count("vs ref") == 2


def test_anchor_without_the_reference_functions_is_refused(tmp_path):
  path = tmp_path / "anchor.py"
  path.write_text("def big(**kw):\n  return {}\n")
  with pytest.raises(ValueError, match=r"must define tiny\(\)"):
    bench.load_anchor(str(path))


def test_missing_anchor_file_is_one_sentence(tmp_path):
  missing = tmp_path / "nope.py"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.tools.bench",
      f"--anchor={missing}",
      "--presets=nano",
      "--steps=1",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0
  assert f"--anchor={str(missing)!r} must name a readable file" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_bench_runs_without_packages_the_gpu_image_lacks():
  # The device image has no ml_collections, tensorflow_datasets, grain or pandas; importing any
  # of them on the bench's path must fail here as it would there. The packed and LoRA rows import
  # nothing the plain rows do not (the tests above run them); the packing rows import the world.
  blocker = textwrap.dedent("""
      import importlib.abc, runpy, sys
      BLOCKED = ('ml_collections', 'tensorflow_datasets', 'grain', 'pandas', 'tensorflow')
      class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is not on the GPU image')
      sys.meta_path.insert(0, Block())
      sys.argv = ['bench', '--presets=nano', '--steps=1', '--batch_size=2', '--seq_len=8',
                  '--pack=0', '--lora_rank=0', '--packing_people=4', '--peak_flops=1e12',
                  '--repeats=1']
      runpy.run_module('experiments.tools.bench', run_name='__main__')
  """)
  proc = subprocess.run(
    [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines()[-1].startswith("nano")


def test_packing_rows_compare_loss_bearing_tokens_of_the_same_stream(monkeypatch, demo12_corpus):
  calls = []

  def fake_time_batches(mcfg, batches, steps, mesh):
    packed = "segment_ids" in batches[0]["base"]
    calls.append(packed)
    return 0.5 if packed else 0.25  # a packed step twice as slow, for the ratio below

  monkeypatch.setattr(bench, "time_batches", fake_time_batches)
  (row,) = bench.packing_rows(["nano"], demo12_corpus, 8, "float32", 1, None, repeats=2)
  assert calls == [False, True] * 2  # alternating, round by round
  loss = {
    p: sum(b["base"]["mask"][..., 1:].sum() for b in bench.world_batches(demo12_corpus, 8, 8, p))
    / 8
    for p in (False, True)
  }
  assert row["loss_tokens_s"] == pytest.approx(loss[False] / 0.25)
  assert row["packed_loss_tokens_s"] == pytest.approx(loss[True] / 0.5)
  assert row["speedup"] == pytest.approx(loss[True] / loss[False] / 2)
  assert row["fill_packed"] > 2 * row["fill_unpacked"]
  assert "packed" in bench.format_packing([row])


def test_persona_update_rows_time_full_and_lora_side_by_side(monkeypatch):
  calls = []
  real = bench.time_batches

  def timed(mcfg, batches, steps, mesh, update="full"):
    calls.append((update, mcfg.lora_rank, sorted(batches[0])))
    real(mcfg, batches, steps, mesh, update)  # the real step runs, on both updates
    return {"full": 0.2, "lora": 0.1}[update] * (1 + len(calls) // 100)

  monkeypatch.setattr(bench, "time_batches", timed)
  (row,) = bench.persona_update_rows(["nano"], 4, 16, 64, "float32", 1, bench.data_mesh(), 2, 2)
  assert calls == [("full", 0, ["base", "persona"]), ("lora", 2, ["base", "persona"])] * 2
  assert (row["full_ms"], row["lora_ms"], row["lora_vs_full"]) == (200.0, 100.0, 0.5)
  # Rank 2 on every projection of two layers: q, k, v, out (32 → 2 → 32) and up, down (32 ↔ 128).
  assert row["trained"] == 2 * (4 * 2 * (32 + 32) + 2 * 2 * (32 + 128))
  assert bench.format_persona_updates([row]).splitlines()[1].split()[-1] == "0.50"
