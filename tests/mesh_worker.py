"""Subprocess body for the multi-device tests: `python tests/mesh_worker.py COMMAND OUT_DIR [ARGS]`.

Simulated CPU devices can only be chosen before JAX starts, so tests/runtime/test_sharding.py runs
this with XLA_FLAGS=--xla_force_host_platform_device_count=N. Commands:
  train OUT MESH...    trains one small pack on each mesh (`ensemble,data,fsdp,tensor`; `1dev` is
                       a mesh of the first device alone); writes OUT/<mesh>.npz (per-step losses,
                       final parameters) and OUT/<mesh>.json (parameter specs, shard shapes), and
                       saves the last mesh's final state as a checkpoint in OUT/ckpt.
  restore OUT SRC MESH restores SRC's checkpoint onto MESH; writes OUT/restored.npz and .json, and
                       saves it again as a checkpoint in OUT/ckpt.
  train_lora, restore_lora   the same with a LoRA persona phase: rank-4 adapters on every
                       projection, trained alone from the initialised model.
"""

import json
import os
import sys

import tiny_runs  # beside this file, so on sys.path when it runs as a script

sys.path.insert(0, tiny_runs.ROOT)

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from experiments import data, grid, resolve, stage, train
from experiments.configs import demo
from experiments.runtime import checkpoints, sharding
from experiments.runtime.workdir import Workdir
from tasks.mixtures import Corpus

STEPS = 3
CELLS = [
  grid.Cell("nano", "finetune", "warm", 0.5, 0.5, 0),
  grid.Cell("nano", "finetune", "cold", 1.0, 0.0, 1),
]


def config():
  c = demo.get_config("runlocal")
  c.data.n_people, c.data.eval_items = 16, 2
  c.data.vocab_size = 576  # the world needs 575 words; an even size lets the tensor axis split it
  c.train.batch_size = 16
  return c


def _mesh(spec):
  c = config().mesh
  if spec == "1dev":
    return sharding.make_mesh(c, jax.devices()[:1])
  c.ensemble, c.data, c.fsdp, c.tensor = (int(n) for n in spec.split(","))
  return sharding.make_mesh(c)


def _flat(state_E):
  return {
    jax.tree_util.keystr(p): np.asarray(jax.device_get(a))
    for p, a in jax.tree_util.tree_leaves_with_path(state_E)
  }


def _describe(state_E):
  return {
    jax.tree_util.keystr(p): {
      "spec": [s if s is None or isinstance(s, str) else list(s) for s in a.sharding.spec],
      "shard": list(a.addressable_shards[0].data.shape),
    }
    for p, a in jax.tree_util.tree_leaves_with_path(state_E)
  }


def _pieces(c, corpus, update):
  c.train.persona_update, c.train.lora_rank = update, 4
  cfg = resolve.resolve(c)
  regime = next(iter(cfg.regimes.values()))
  mcfg = regime.model_config(resolve.model_config(cfg, "nano", corpus.tokenizer.size))
  st = stage.imitation(
    "persona",
    "pack/stage",
    CELLS,
    STEPS,
    c.train,
    mcfg,
    data.Batches(corpus, c.train.data_seed, c.train.batch_size).persona(CELLS, 0),
    1e-2,
    regime=regime,
  )
  _, abstract = train.abstract_states(mcfg, len(CELLS))
  abstract_opt = jax.eval_shape(jax.vmap(train.member_init(st.optimizer, update)), abstract)
  return mcfg, st, abstract, abstract_opt


def _write(out, name, state_E, **arrays):
  np.savez(os.path.join(out, f"{name}.npz"), **_flat(state_E), **arrays)
  with open(os.path.join(out, f"{name}.json"), "w") as f:
    json.dump(_describe(state_E), f)


def _save(out, c, state_E):
  workdir = Workdir(os.path.join(out, "workdir"), c.to_dict())
  checkpoints.save(workdir, "pack/stage", state_E, [cell.id for cell in CELLS], step=STEPS)


def cmd_train(out, *meshes, update="full"):
  c = config()
  corpus = Corpus(resolve.world_config(c.data))
  mcfg, st, abstract, abstract_opt = _pieces(c, corpus, update)
  for spec in meshes:
    mesh = _mesh(spec)
    sh = sharding.PackShardings(
      mesh, sharding.rules_of(c.mesh), abstract, abstract_opt, st.batches.shapes
    )
    state_E = train.init_states(mcfg, [0, 1], sh)[1]
    state_E, _, history = train.train_stage(
      st, state_E, shardings=sh, options=train.Options(log_every=1)
    )
    losses = np.stack([h["loss"] for h in history])
    _write(out, spec, state_E, __losses=losses)
  _save(out, c, state_E)


def cmd_restore(out, src, spec, update="full"):
  c = config()
  corpus = Corpus(resolve.world_config(c.data))
  _, st, abstract, abstract_opt = _pieces(c, corpus, update)
  sh = sharding.PackShardings(
    _mesh(spec), sharding.rules_of(c.mesh), abstract, abstract_opt, st.batches.shapes
  )
  workdir = Workdir(os.path.join(src, "workdir"), c.to_dict())
  state_E = checkpoints.restore(workdir, "pack/stage", sh.abstract(abstract, sh.state))
  _write(out, "restored", state_E)
  _save(out, c, state_E)


if __name__ == "__main__":
  command, lora, args = (
    sys.argv[1].removesuffix("_lora"),
    sys.argv[1].endswith("_lora"),
    sys.argv[2:],
  )
  {"train": cmd_train, "restore": cmd_restore}[command](*args, update="lora" if lora else "full")
