"""The throughput bench runs the real packed step and reports sane figures."""
from experiments import bench


def test_bench_rows_and_table():
  table = bench.rows(["nano"], batch_size=4, seq_len=16, vocab=64, dtype="float32",
                     attention="auto", steps=1, peak=1e12, pack=2, pack_max=10**9)
  (row,) = table
  assert row["preset"] == "nano" and row["attention"] == "xla"  # cuDNN only on a GPU in bf16
  assert row["tokens_s"] > 0 and 0 < row["mfu"] < 1 and row["pack"] == 2 and row["speedup"] > 0
  text = bench.format_table(table)
  assert "packed tokens/s" in text and text.splitlines()[1].startswith("nano")
