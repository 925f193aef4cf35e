"""One experiment: build the world, train every pack of cells, evaluate, save every cell.

For each (preset, protocol) pack:
  finetune: stage 1 gives one base model per seed, read from the base-model store or trained
            (packed over seeds) on the base mixture (experiments/base_models.py); the
            base models are evaluated as persona=`none` cells; the extensions see them
            (after_base); stage 2 starts every persona cell from its seed's base model (common
            random numbers) with (1-λ)·L_base + λ·L_persona.
  mixture:  every cell trains from scratch with (1-λ)·L_base + λ·L_persona for all steps.

Every stage trains on the mesh of `config.mesh` and resumes from its latest checkpoint
(experiments/stage.py). With several processes all of them run this, agree on process 0's plan of
unfinished cells, and only process 0 writes results. Extensions (experiments/extensions.py) add
cells, per-pack analyses, training-time interventions and evaluation rows through their hooks.
"""

import dataclasses
import os
import time

from absl import logging
from flax import nnx
import jax
import numpy as np

from experiments import (
  base_models,
  data,
  evaluate,
  grid,
  resolve,
  stage,
  train,
)
from experiments.analysis import controls, stats, summary
from experiments.runtime import distributed, heartbeat, host_memory, members, results, sharding
from experiments.runtime.base_store import BaseStore
from experiments.runtime.tensorboard import Board
from experiments.runtime.workdir import Workdir
from tasks.mixtures import Corpus, build_eval_set


@dataclasses.dataclass
class Pack:
  """One (preset, protocol[, chunk]) pack: its cells, those still to do, its model."""

  label: str
  cells: list
  todo: list
  model: object  # models.ModelConfig
  seeds: list = None  # finetune: the base checkpoint's seeds, in row order
  graphdef: object = None  # finetune: set once the base models exist
  base_E: object = None
  base_opt_E: object = None  # finetune: base training's last optimizer state, if a regime
  # continues it

  @property
  def preset(self):
    return self.cells[0].preset


@dataclasses.dataclass
class RunContext:
  """What every pack of one run shares; extensions train and save cells through it."""

  config: object
  workdir: Workdir
  mesh: object
  corpus: Corpus
  evalset: object
  batches: data.Batches
  board: object  # runtime/tensorboard.Board, or None
  extensions: list
  store: object = None  # runtime/base_store.BaseStore, or None (runtime.base_store = "")

  def train(self, what, init, init_opt=None):
    """stage.Trained of Stage `what`: finished earlier, resumed, or trained; init(shardings)
    gives the state a new stage starts from, init_opt(shardings) its optimizer state if given."""
    try:
      return stage.train_or_resume(
        self.config, self.workdir, self.mesh, what, init, self.board, init_opt
      )
    except train.Diverged as e:
      self.workdir.record_failure(what.name, what.members, str(e))
      raise

  def tokens(self, steps):
    """Token slots (padding included) a model has trained on after `steps` steps."""
    return steps * self.config.train.batch_size * self.config.world.seq_len

  def evaluate_and_save(
    self, pack, graphdef, state_E, index, cells, tokens, losses, pack_state=None, curve=None
  ):
    """Evaluates `cells`, rows `index` of state_E, on process 0 and saves each cell.

    losses: {name: [value per row of state_E]}; pack_state: each extension's after_base result;
    curve: (steps, loss per step × row of state_E) of the stage that trained them, saved as
    `loss` rows at each logged step's token count. Returns {run: metrics} of the saved cells
    (empty on processes other than 0).
    """
    local = distributed.to_local(state_E)  # every process takes part in the gather
    if not self.workdir.writer:
      return {}
    cells_E = data.take(local, index)
    graded = [not self.config.eval.blind or c.persona in controls.CONTROLS for c in cells]
    frames = evaluate.evaluate_pack(
      graphdef, cells_E, self.evalset, self.corpus.tokenizer, self.config.eval, graded=graded
    )
    extras = [
      ext.evaluate(self, (pack_state or {}).get(ext.name), graphdef, cells_E, cells, frames)
      for ext in self.extensions
    ]
    saved = {}
    for e, cell in enumerate(cells):
      metrics, items = results.cell_frames(
        cell,
        frames[e],
        resolve.model_sizes(pack.model),
        tokens,
        {k: np.asarray(v)[index[e]] for k, v in losses.items()},
      )
      for extra in extras:
        if extra:
          metrics, items = results.with_extra(metrics, items, *extra[e])
      if curve is not None and len(curve[0]):
        steps, loss_KE = curve
        metrics, items = results.with_extra(
          metrics, items, results.curve_rows(steps, loss_KE[:, index[e]], self.tokens), []
        )
      self.workdir.save_cell(cell.id, metrics, items)
      saved[cell.id] = metrics
      if self.board is not None:  # at the run's last training step
        step = tokens // (self.config.train.batch_size * self.config.world.seq_len)
        self.board.evaluation(cell.id, int(step), metrics)
    return saved


def run(config, workdir_path, tensorboard=False):
  """Runs (or resumes) every cell of `config` (a resolve.Config); returns the merged (metrics,
  items).

  The mesh and the data come before the first file (config.json, then TensorBoard's under tb/ when
  `tensorboard`), so a refused run leaves the workdir as it was. Processes other than process 0
  (multi-host runs) train and evaluate alike but return (None, None).
  """
  mesh = sharding.make_mesh(config.mesh)  # a mesh that does not fit fails before any file exists
  members.configure(config.mesh.members, mesh)
  if jax.default_backend() == "cpu":
    host_memory.keep_freed_memory()  # XLA's per-step buffers reused, not paged in again
  if config.data.source == "tfds":
    # Imported only here: the GPU image has no tensorflow-datasets, and memory needs none.
    from tasks.tfds_source import TfdsCorpus  # pylint: disable=g-import-not-at-top

    corpus = TfdsCorpus(config.world, config.data.tfds_dir)
  else:
    corpus = Corpus(config.world)
  corpus.encode_all()  # an example longer than data.seq_len is refused here
  evalset = build_eval_set(corpus)
  store = BaseStore(config.runtime.base_store) if config.runtime.base_store else None
  workdir = Workdir(
    workdir_path, config.record(), config.asked.to_dict(), write=distributed.is_writer()
  )
  board = Board(os.path.join(workdir_path, "tb")) if tensorboard and workdir.writer else None
  ctx = RunContext(
    config,
    workdir,
    mesh,
    corpus,
    evalset,
    data.Batches(
      corpus, config.train.data_seed, config.train.batch_size, config.train.pack_sequences
    ),
    board,
    config.extensions,
    store,
  )
  cells = config.cells()
  packs = grid.packs(cells, config.grid.max_pack_size)
  # Process 0 reads which cells are finished; everyone follows its plan.
  finished = distributed.agree([workdir.cell_done(c.id) for c in cells])
  done = {c.id for c, d in zip(cells, finished) if d}
  logging.info(
    "world: %d people, vocabulary %d, %d eval prompts; %d cells in %d packs, %d finished "
    "earlier; mesh %s over %d devices in %d processes, members by %s",
    config.world.n_people,
    corpus.tokenizer.size,
    len(evalset.items),
    len(cells),
    len(packs),
    len(done),
    sharding.describe(mesh),
    mesh.size,
    jax.process_count(),
    members.current(),
  )
  # The run ETA counts cells: small models on a CPU cost about the same per cell whatever their size.
  t0, cells_left, cells_done = time.perf_counter(), len(cells), 0
  for key, cells_of_pack in packs.items():
    label = "-".join(str(k) for k in key)
    todo = [c for c in cells_of_pack if c.id not in done]
    if not todo:
      logging.info("pack %s: all %d cells finished earlier", label, len(cells_of_pack))
      cells_left -= len(cells_of_pack)
      continue
    mcfg = resolve.model_config(
      config, cells_of_pack[0].preset, corpus.tokenizer.size, jax.default_backend()
    )
    elapsed = time.perf_counter() - t0
    eta = f", run ETA ~{elapsed / cells_done * cells_left / 60:.0f} min" if cells_done else ""
    logging.info(
      "pack %s: %d of %d cells to do, %d parameters (%d non-embedding); %.0f min so far%s",
      label,
      len(todo),
      len(cells_of_pack),
      *resolve.model_sizes(mcfg),
      elapsed / 60,
      eta,
    )
    pack = Pack(label, cells_of_pack, todo, mcfg)
    runner = _run_finetune if cells_of_pack[0].protocol == "finetune" else _run_mixture
    try:
      runner(ctx, pack)
    finally:
      if board is not None:
        board.close()  # flushes; a later pack reopens the writers it needs
    cells_done += len(cells_of_pack)
    cells_left -= len(cells_of_pack)
  if not workdir.writer:
    return None, None
  return workdir.merge([c.id for c in cells])


def _run_finetune(ctx, pack):
  config, t = ctx.config, ctx.config.train
  # The base checkpoint holds every seed the preset trains (grid.preset_seeds).
  pack.seeds = sorted(int(s) for s in config.grid.seeds_of(pack.preset))
  # One base stage per preset, whatever the pack: every regime fine-tunes the same base models.
  continued = any(r.train.persona_optimizer == "continue" for r in config.regimes.values())
  pack.graphdef, pack.base_E, _, base_curve, pack.base_opt_E = base_models.train_bases(
    ctx, pack, keep_optimizer=continued
  )
  # Each extension's view of the base models (persona geometry; objective cells trained here).
  pack_state = {ext.name: ext.after_base(ctx, pack) for ext in ctx.extensions}
  base_tokens = ctx.tokens(t.base_steps)
  none_cells = [c for c in pack.todo if c.persona == "none"]
  if none_cells:
    frames = ctx.evaluate_and_save(
      pack,
      pack.graphdef,
      pack.base_E,
      [pack.seeds.index(c.seed) for c in none_cells],
      none_cells,
      base_tokens,
      {},
      pack_state,
      curve=base_curve,
    )
    base_models.note_competence(ctx, pack, none_cells, frames)
  trained_elsewhere = lambda c: any(ext.trains(c) for ext in ctx.extensions)
  todo = [c for c in pack.todo if c.persona != "none" and not trained_elsewhere(c)]
  if not todo:
    return
  name = f"{pack.label}/persona"
  members = stage.members_to_train(
    ctx.workdir, name, todo, [c for c in pack.cells if not trained_elsewhere(c)]
  )
  index = [pack.seeds.index(c.seed) for c in members]
  steers = [
    s
    for s in (ext.intervention(pack_state[ext.name], members) for ext in ctx.extensions)
    if s is not None
  ]
  if len(steers) > 1:
    raise ValueError(
      f"extensions {[ext.name for ext in ctx.extensions]} each add a training-time "
      "intervention; at most one may."
    )
  # A pack holds one regime's cells of one preset (grid.Cell.pack), trained in its fields for
  # that preset (regimes.Regime.at).
  regime = config.regimes[members[0].regime].at(pack.preset)
  rt, steps = regime.train, regime.steps(ctx.corpus)
  persona = stage.imitation(
    "persona",
    name,
    members,
    steps,
    rt,
    regime.model_config(pack.model),
    ctx.batches.persona(members, data.STAGE2_SEED_OFFSET),
    rt.persona_learning_rate,
    step_offset=t.base_steps,
    steer=steers[0] if steers else None,
    regime=regime,
  )
  init_opt = None
  if rt.persona_optimizer == "continue":
    init_opt = lambda sh: jax.jit(
      lambda o: train.continue_from(data.take(o, index)), out_shardings=sh.opt_state
    )(pack.base_opt_E)
  graphdef, state_E, losses, _, _ = ctx.train(
    persona, lambda sh: persona_start(pack, persona, members, sh, t.init_seed), init_opt
  )
  ctx.evaluate_and_save(
    pack,
    graphdef,
    state_E,
    [members.index(c) for c in todo],
    todo,
    base_tokens + ctx.tokens(steps),
    dict(losses, update_norm=_update_norms(ctx.mesh, persona, state_E, pack.base_E, index)),
    pack_state,
  )


def _update_norms(mesh, persona, state_E, base_E, index):
  """Each trained member's ‖θ − θ_base‖ (train.update_norms; rows `index` of base_E are their
  base models), on the host of every process: the `update_norm` row, how hard the regime pushed."""
  norms = lambda s, b: train.update_norms(s, data.take(b, index), persona.model.lora_scale)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return np.asarray(jax.jit(norms, out_shardings=replicated)(state_E, base_E))


def persona_start(pack, persona, cells, shardings, init_seed):
  """The persona phase's first state: each cell's base model (its seed's row of the pack's base
  models), with new adapters (B = 0, so the same function) under LoRA, drawn per fine-tuning
  seed."""
  take = lambda s: data.take(s, [pack.seeds.index(c.seed) for c in cells])
  if persona.update == "full":
    return jax.jit(take, out_shardings=shardings.state)(pack.base_E)
  # Made in the same program as the take, from host keys: every process builds the same global
  # state, placed where the persona stage's shardings say.
  keys = train.adapter_keys(
    [init_seed + c.seed for c in cells], [getattr(c, "finetune_seed", 0) for c in cells]
  )
  return jax.jit(
    lambda base, k: nnx.merge_state(train.new_adapters(persona.model, k), take(base)),
    out_shardings=shardings.state,
  )(pack.base_E, keys)


def _run_mixture(ctx, pack):
  t = ctx.config.train
  steps = t.base_steps + t.persona_steps
  name = f"{pack.label}/mixture"
  members = stage.members_to_train(ctx.workdir, name, pack.todo, pack.cells)
  mixture = stage.imitation(
    "mixture", name, members, steps, t, pack.model, ctx.batches.persona(members, 0), t.learning_rate
  )
  init = lambda sh: train.init_states(pack.model, [t.init_seed + c.seed for c in members], sh)[1]
  graphdef, state_E, losses, curve, _ = ctx.train(mixture, init)
  ctx.evaluate_and_save(
    pack,
    graphdef,
    state_E,
    [members.index(c) for c in pack.todo],
    pack.todo,
    ctx.tokens(steps),
    losses,
    curve=curve,
  )


def conclude(config, workdir_path, metrics, items):
  """After the merge: the paired changes (once), each extension's rows, one write of the results
  (runtime/results.py); returns the text the run prints."""
  logging.info(
    "summary: paired changes of %d runs, %d bootstrap draws",
    items.run.nunique(),
    config.eval.bootstrap,
  )
  with heartbeat.Heartbeat(lambda: "summary: paired changes running") as beat:
    deltas = stats.paired_deltas(items, "error", n_boot=config.eval.bootstrap)
    parts = []
    for ext in config.extensions:
      distributed.stop_if_asked("the summary")  # nothing is written until every part is ready
      logging.info("summary: %s", ext.name)
      beat.touch(f"summary: {ext.name} running")
      parts.append(ext.summarize(workdir_path, metrics, items))
  results.write(workdir_path, metrics, items, deltas, *[rows for rows, _ in parts])
  return "\n".join(
    [summary.format_table(summary.main_table(deltas))] + [text for _, text in parts if text]
  )
