"""The base-model store: what is stored comes back exactly, and nothing damaged, mismatched or
half-written is ever used; runs that share a store reuse base models byte-identically."""

import json
import os
import subprocess

from etils import epath
import numpy as np
import pytest
import tiny_runs

from experiments.runtime import base_store

KEY = base_store.Key.of(
  "nano", {"model": {"d_model": 32}, "train": {"base_steps": 6}}, {"jax": "1.0", "backend": "cpu"}
)


def _trees(value):
  state = {
    "blocks": {0: {"w": np.full((1, 3, 2), value, np.float32)}},
    "embed": np.arange(4, dtype=np.float32).reshape(1, 4) + value,
  }
  opt = [np.full((1, 3), value, np.float32), np.array([7], np.int32)]
  return state, opt


def _target():
  state, opt = _trees(0.0)
  return state, opt


def _publish(store, seed=3, value=1.5, key=KEY):
  state, opt = _trees(value)
  return store.publish(key, seed, state, opt, [[2, 4.5], [4, 3.25]])


def test_a_published_base_comes_back_exactly(tmp_path):
  store = base_store.BaseStore(str(tmp_path))
  assert _publish(store)
  got = store.fetch(KEY, 3, "nano seed 3", _target())
  want_state, want_opt = _trees(1.5)
  np.testing.assert_array_equal(got.state["blocks"][0]["w"], want_state["blocks"][0]["w"])
  np.testing.assert_array_equal(got.state["embed"], want_state["embed"])
  assert [a.tolist() for a in got.opt_state] == [a.tolist() for a in want_opt]
  assert got.curve == [[2, 4.5], [4, 3.25]]
  assert store.fetch(KEY, 4, "nano seed 4", _target()) is None  # another seed is not stored


def test_the_first_complete_copy_wins_and_the_second_leaves_nothing(tmp_path):
  store = base_store.BaseStore(str(tmp_path))
  assert _publish(store, value=1.0)
  assert not _publish(store, value=2.0)
  directory = store.seed_dir(KEY, 3)
  assert len([n for n in os.listdir(directory) if n.startswith("attempt-")]) == 1
  assert store.fetch(KEY, 3, "x", _target()).opt_state[0][0, 0] == 1.0


def test_a_key_or_environment_change_is_another_entry(tmp_path, caplog):
  store = base_store.BaseStore(str(tmp_path))
  _publish(store)
  other_train = base_store.Key.of("nano", {**KEY.fields, "train": {"base_steps": 7}}, KEY.env)
  assert other_train.name != KEY.name
  assert store.fetch(other_train, 3, "nano seed 3", _target()) is None
  newer = base_store.Key.of("nano", KEY.fields, {"jax": "2.0", "backend": "cpu"})
  with caplog.at_level("INFO"):
    assert store.fetch(newer, 3, "nano seed 3", _target()) is None
  line = [r.getMessage() for r in caplog.records if "computed with jax" in r.getMessage()]
  assert len(line) == 1 and "jax 1.0 on cpu" in line[0] and "jax 2.0 on cpu" in line[0]


@pytest.mark.parametrize(
  "damage", ["flip_a_byte", "delete_a_file", "manifest_of_another_key", "manifest_not_json"]
)
def test_a_damaged_base_is_named_set_aside_and_never_used(tmp_path, caplog, damage):
  store = base_store.BaseStore(str(tmp_path))
  _publish(store)
  directory = store.seed_dir(KEY, 3)
  manifest_path = os.path.join(directory, base_store.MANIFEST)
  with open(manifest_path) as f:
    manifest = json.load(f)
  attempt = os.path.join(directory, manifest["attempt"])
  largest = max(manifest["files"], key=lambda rel: manifest["files"][rel][0])
  if damage == "flip_a_byte":
    with open(os.path.join(attempt, largest), "r+b") as f:
      f.seek(manifest["files"][largest][0] // 2)
      byte = f.read(1)
      f.seek(-1, 1)
      f.write(bytes([byte[0] ^ 0xFF]))
  elif damage == "delete_a_file":
    os.remove(os.path.join(attempt, largest))
  elif damage == "manifest_of_another_key":
    manifest["key"]["train"]["base_steps"] = 99
    with open(manifest_path, "w") as f:
      json.dump(manifest, f)
  else:
    with open(manifest_path, "w") as f:
      f.write("{not json")
  with caplog.at_level("WARNING"):
    assert store.fetch(KEY, 3, "nano seed 3", _target()) is None
  assert any(directory in r.getMessage() and "never used" in r.getMessage() for r in caplog.records)
  assert not os.path.exists(manifest_path)  # set aside: the retrained copy can be published
  assert [e["status"] for e in store.entries()] == ["incomplete"]
  assert _publish(store, value=4.0)
  assert store.fetch(KEY, 3, "nano seed 3", _target()).opt_state[0][0, 0] == 4.0


def test_an_attempt_without_a_manifest_is_not_a_stored_base(tmp_path, caplog):
  store = base_store.BaseStore(str(tmp_path))
  _publish(store)
  os.remove(os.path.join(store.seed_dir(KEY, 3), base_store.MANIFEST))  # killed before publishing
  with caplog.at_level("INFO"):
    assert store.fetch(KEY, 3, "nano seed 3", _target()) is None
  assert any("holds no finished copy" in r.getMessage() for r in caplog.records)
  (entry,) = store.entries()
  assert entry["status"] == "incomplete" and len(entry["leftovers"]) == 1


def test_a_store_of_another_scheme_is_refused_in_one_sentence():
  with pytest.raises(ValueError, match=r"runtime\.base_store=s3://b/x has a scheme .* gs://"):
    base_store.BaseStore("s3://b/x")


def test_a_store_on_a_bucket_publishes_once_and_never_uses_a_damaged_copy(gcs, caplog):
  store = base_store.BaseStore(gcs("store"))
  assert store.root.startswith("gs://warmth-test/store-")  # a URL stays one (no abspath)
  assert _publish(store, value=1.0)
  assert not _publish(store, value=2.0)  # GCS refuses the second create of manifest.json
  directory = epath.Path(store.seed_dir(KEY, 3))
  assert len([p for p in directory.iterdir() if p.name.startswith("attempt-")]) == 1
  assert store.fetch(KEY, 3, "x", _target()).opt_state[0][0, 0] == 1.0
  manifest = json.loads((directory / base_store.MANIFEST).read_text())
  largest = max(manifest["files"], key=lambda rel: manifest["files"][rel][0])
  damaged = directory / manifest["attempt"] / largest
  data = bytearray(damaged.read_bytes())
  data[len(data) // 2] ^= 0xFF
  damaged.write_bytes(bytes(data))
  with caplog.at_level("WARNING"):
    assert store.fetch(KEY, 3, "nano seed 3", _target()) is None
  assert any("does not match its manifest" in r.getMessage() for r in caplog.records)
  assert not (directory / base_store.MANIFEST).exists()  # set aside
  assert [e["status"] for e in store.entries()] == ["incomplete"]
  assert _publish(store, value=4.0)
  assert store.fetch(KEY, 3, "nano seed 3", _target()).opt_state[0][0, 0] == 4.0
  (entry,) = store.entries()
  assert entry["status"] == "stored" and entry["bytes"] > 0 and len(entry["leftovers"]) == 2


# --- Whole runs sharing a store (tests/tiny_runs.py's command, store switched on).


def _run(workdir, store, *overrides):
  cmd = tiny_runs.main_cmd(workdir, f"--config.runtime.base_store={store}", *overrides)
  # Optimised, as runs are: that a base comes out bit for bit the same whatever pack trained it
  # is a property of the program XLA optimises (tests/conftest.py turns optimisation off).
  return tiny_runs.run(cmd, timeout=600, JAX_DISABLE_MOST_OPTIMIZATIONS="0").stderr


def _read(workdir, name="metrics.csv"):
  with open(os.path.join(workdir, name), "rb") as f:
    return f.read()


@pytest.mark.slow
def test_reuse_is_byte_identical_to_training_in_place_whatever_the_pack(tmp_path):
  store = tmp_path / "store"
  first = _run(tmp_path / "a", store, "--config.grid.seeds=(0,1)")
  assert "nano seed 0: base trained and stored" in first
  # Seed 1 comes from a pack with seed 0, seed 2 is trained alone; in place both train together.
  reused = _run(tmp_path / "b", store, "--config.grid.seeds=(1,2)")
  assert "nano seed 1: base reused from" in reused
  assert "nano seed 2: base trained and stored" in reused
  _run(tmp_path / "c", "", "--config.grid.seeds=(1,2)")
  for name in ("metrics.csv", "items.csv"):
    assert _read(tmp_path / "b", name) == _read(tmp_path / "c", name)
  # A damaged file is named, the base trained again, and the results are those of run b.
  entry = os.path.join(store, os.listdir(store)[0], "seed1")
  with open(os.path.join(entry, base_store.MANIFEST)) as f:
    manifest = json.load(f)
  victim = os.path.join(entry, manifest["attempt"], max(manifest["files"]))
  with open(victim, "ab") as f:
    f.write(b"\0")
  repaired = _run(tmp_path / "e", store, "--config.grid.seeds=(1,2)")
  assert "is set aside and trained anew, never used" in repaired
  assert "nano seed 1: base trained and stored" in repaired
  assert _read(tmp_path / "e") == _read(tmp_path / "b")


@pytest.mark.slow
def test_two_processes_that_need_one_base_leave_one_valid_copy(tmp_path):
  store = tmp_path / "store"
  procs = [
    subprocess.Popen(
      tiny_runs.main_cmd(
        tmp_path / f"w{i}", f"--config.runtime.base_store={store}", "--config.grid.seeds=(0,1)"
      ),
      cwd=tiny_runs.ROOT,
      env=tiny_runs.env(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  logs = [p.communicate(timeout=600)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
  entries = base_store.BaseStore(str(store)).entries()
  assert sorted(e["seed"] for e in entries) == ["0", "1"]
  assert all(e["status"] == "stored" and not e["leftovers"] for e in entries)
  lines = [line for log in logs for line in log.splitlines()]
  for seed in (0, 1):  # published once, whoever trained it; a second copy says it was discarded
    stored = [l for l in lines if f"nano seed {seed}: base trained and stored" in l]
    reused = [l for l in lines if f"nano seed {seed}: base reused" in l]
    assert len(stored) + len(reused) == 2
    assert len([l for l in stored if "this one discarded" not in l]) == 1
  assert _read(tmp_path / "w0") == _read(tmp_path / "w1")


def test_the_default_store_lies_in_the_users_cache(monkeypatch):
  from experiments.configs import common

  assert common.base_config().runtime.base_store == base_store.DEFAULT_ROOT
  monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/me")
  assert base_store.resolve(base_store.DEFAULT_ROOT) == "/var/cache/me/warmth-sim/bases"
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", "/home/me")
  assert base_store.resolve(base_store.DEFAULT_ROOT) == "/home/me/.cache/warmth-sim/bases"
  assert base_store.resolve("~/bases") == "/home/me/bases"
