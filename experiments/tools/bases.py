"""The base-model store (experiments/runtime/base_store.py): fill it for a config, list it, prune it.

  python -m experiments.tools.bases train --config=experiments/configs/study.py:preset=nano
  python -m experiments.tools.bases list [--store=DIR]
  python -m experiments.tools.bases prune --config=experiments/configs/study.py \
      [--also=experiments/configs/demo.py] [--yes]

`train` trains and stores every base model the config's finetune cells need (each preset × seed
not stored yet), exactly as a run of the config would; a killed `train` resumes where it stopped
(each preset's stage trains in <store>/.train/<key>/, a workdir of its own, and its bases are
published when the stage is done). Progress: steps/s and ETA per stage, and bases left per preset.
`list` prints one row per stored base: preset, key, seed, status, size, the key's main fields and
the competence a run measured (reliability error in the neutral context, generated and multiple
choice). `prune` names what no given config uses (other keys, killed writers' attempts, damaged
copies set aside, unfinished `train` workdirs) and removes it only with --yes.

The store is the config's runtime.base_store, or --store.
"""

import importlib.util
import os
import shutil
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags


def _define_flags():
  """The command's flags; defined when it runs, so that importing this module (tests, other
  tools) does not claim flag names such as --config."""
  config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
  flags.DEFINE_string(
    "store",
    None,
    "The store's directory (default: the config's "
    "runtime.base_store, else the default under the user's cache).",
  )
  flags.DEFINE_multi_string(
    "also", [], "prune: another config (file.py[:arg]) whose base models are kept."
  )
  flags.DEFINE_boolean("yes", False, "prune: remove what is listed (otherwise only list it).")


COMMANDS = ("train", "list", "prune")
TRAINING = ".train"  # <store>/.train/<key>: the workdir a `train` stage resumes from


def _store_path(config):
  # Every import of the pipeline waits for the command to run: flag errors come before JAX starts.
  from experiments.runtime import base_store  # pylint: disable=g-import-not-at-top

  path = flags.FLAGS.store or (config.runtime.base_store if config is not None else None)
  return base_store.resolve(path or base_store.DEFAULT_ROOT)


def _load_config(spec):
  """The ConfigDict of `file.py[:arg]` (as --config loads it, without overrides)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(
      f"--also={spec}: {path} does not exist (configs live in experiments/configs/)."
    )
  module_spec = importlib.util.spec_from_file_location("_also_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


class _Setup:
  """What computing a config's base models needs: its world, mesh, members mode, model configs."""

  def __init__(self, config):
    import jax  # pylint: disable=g-import-not-at-top

    from experiments import resolve  # pylint: disable=g-import-not-at-top
    from experiments.runtime import members, sharding  # pylint: disable=g-import-not-at-top
    from tasks.mixtures import Corpus  # pylint: disable=g-import-not-at-top

    self.config = config = resolve.resolve(config)
    self.mesh = sharding.make_mesh(config.mesh)
    members.configure(config.mesh.members, self.mesh)
    self.corpus = Corpus(config.world).encode_all()
    self.seeds = {p: sorted(int(s) for s in config.grid.seeds_of(p)) for p in config.model.presets}
    self.presets = list(config.model.presets) if "finetune" in config.grid.protocols else []
    self.models = {
      p: resolve.model_config(config, p, self.corpus.tokenizer.size, jax.default_backend())
      for p in self.presets
    }

  def key(self, preset):
    from experiments import base_models  # pylint: disable=g-import-not-at-top

    return base_models.key(self.config, self.corpus, self.models[preset], preset, self.mesh)


def train(config):
  """Fills the store with every base model of `config`; returns the number trained."""
  from experiments import base_models, data, experiment, grid  # pylint: disable=g-import-not-at-top
  from experiments.runtime.base_store import BaseStore  # pylint: disable=g-import-not-at-top
  from experiments.runtime.workdir import Workdir  # pylint: disable=g-import-not-at-top

  setup = _Setup(config)
  store = BaseStore(_store_path(config))
  config = setup.config
  t0, trained = time.perf_counter(), 0
  for n, preset in enumerate(setup.presets):
    key = setup.key(preset)
    target = base_models.target_of(config, setup.models[preset])
    missing = [
      s for s in setup.seeds[preset] if store.fetch(key, s, f"{preset} seed {s}", target) is None
    ]
    elapsed = time.perf_counter() - t0
    eta = f"; ~{elapsed / trained * len(missing) / 60:.0f} min for them" if trained else ""
    logging.info(
      "bases: preset %d of %d (%s): %d of %d seeds to train%s",
      n + 1,
      len(setup.presets),
      preset,
      len(missing),
      len(setup.seeds[preset]),
      eta,
    )
    if not missing:
      continue
    scratch = os.path.join(store.root, TRAINING, key.name)
    ctx = experiment.RunContext(
      config,
      Workdir(scratch, {"key": key.fields, "env": key.env}),
      setup.mesh,
      setup.corpus,
      None,
      data.Batches(
        setup.corpus, config.train.data_seed, config.train.batch_size, config.train.pack_sequences
      ),
      None,
      [],
      store,
    )
    cells = [grid.Cell(preset, "finetune", "none", 0.0, 0.0, s, "none") for s in missing]
    pack = experiment.Pack(preset, cells, cells, setup.models[preset], seeds=missing)
    base_models.fill(ctx, pack, missing)
    shutil.rmtree(scratch, ignore_errors=True)  # every base of it is published
    trained += len(missing)
  logging.info(
    "bases: %d trained and stored in %s, %.1f min",
    trained,
    store.root,
    (time.perf_counter() - t0) / 60,
  )
  return trained


def _fields(entry):
  """A short description of a key: model width and depth, base steps and rate, members mode."""
  f = entry["fields"]
  model, t, world = f.get("model", {}), f.get("train", {}), f.get("world", {})
  return (
    f"d{model.get('d_model')}×{model.get('n_layers')} {t.get('base_steps')} steps "
    f"lr {t.get('learning_rate')} {world.get('n_people')} people {f.get('members')} "
    f"jax {entry['env'].get('jax')} {entry['env'].get('backend')}"
  )


def _competence(entry):
  c = entry["competence"] or {}
  if not c:
    return "-"
  return " ".join(f"{k.replace('_rate', '')} {100 * v:.1f}%" for k, v in sorted(c.items()))


def list_store(root, write=print):
  from experiments.runtime.base_store import BaseStore  # pylint: disable=g-import-not-at-top

  entries = BaseStore(root).entries()
  write(f"{root}: {len(entries)} base model(s)")
  for e in entries:
    write(
      f"  {e['key']}  seed {e['seed']:>3}  {e['status']:<10} {e['bytes'] / 1e6:7.2f} MB  "
      f"{_fields(e)}  competence: {_competence(e)}  {e['created']}"
    )
  return entries


def prune(configs, root, yes, write=print):
  """Lists (and with yes removes) what none of `configs` names; returns the paths."""
  from experiments.runtime.base_store import BaseStore  # pylint: disable=g-import-not-at-top

  store = BaseStore(root)
  wanted = set()
  for config in configs:
    setup = _Setup(config)
    wanted |= {(setup.key(p).name, str(s)) for p in setup.presets for s in setup.seeds[p]}
  doomed = []
  for e in store.entries(verify=False):
    if (e["key"], e["seed"]) not in wanted:
      doomed.append((e["path"], f"{e['key']} seed {e['seed']}: no given config uses it"))
    else:
      doomed += [
        (os.path.join(e["path"], n), f"{e['key']} seed {e['seed']}: leftover {n}")
        for n in e["leftovers"]
      ]
  scratch = os.path.join(store.root, TRAINING)
  if os.path.isdir(scratch):
    doomed += [
      (os.path.join(scratch, n), f"unfinished `bases train` workdir {n}")
      for n in sorted(os.listdir(scratch))
    ]
  for path, why in doomed:
    write(f"{'removing' if yes else 'would remove'} {path} ({why})")
  if yes:
    for path, _ in doomed:
      if os.path.basename(path).startswith("seed"):
        store.remove(path)
      elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
  elif doomed:
    write(f"{len(doomed)} item(s); rerun with --yes to remove them.")
  else:
    write("nothing to remove.")
  return [p for p, _ in doomed]


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    sys.exit(
      f"error: give one command, {', '.join(COMMANDS)} (e.g. `python -m "
      "experiments.tools.bases list`)."
    )
  command, config = argv[1], flags.FLAGS.config
  if command in ("train", "prune") and config is None:
    sys.exit(
      f"error: `{command}` needs --config=FILE.py[:arg], the config whose bases it "
      f"{'trains' if command == 'train' else 'keeps'}."
    )
  try:
    if command == "train":
      train(config)
    elif command == "list":
      list_store(_store_path(config))
    else:
      prune(
        [config] + [_load_config(spec) for spec in flags.FLAGS.also],
        _store_path(config),
        flags.FLAGS.yes,
      )
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
