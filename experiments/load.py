"""One trained cell out of a workdir, ready to probe: `experiments.load_cell(workdir, cell_id)`.

A checkpoint holds a whole pack (every cell trained together) stacked on a leading axis, and each
stage names its rows differently (the base stage by seed, later stages by cell id). `load_cell`
finds the stage that trained the cell, restores its last complete step, takes that one row and
returns it with the model config saved beside the checkpoint, the tokenizer and the world:

  from experiments import load_cell
  r = load_cell("workdirs/demo", "micro-finetune-warm-l1-r0-s0")
  item_id, context, prompt = r.eval_prompts()[0]
  print(prompt, "->", r.reply(prompt))      # greedy, as the evaluation generates
  out = r.model(r.encode(prompt), return_residuals=True)  # out.residuals_LBTD: [L, 1, T, D]

`cell_id` is metrics.csv's `run` column (`<preset>-<protocol>-<persona>-l<λ>-r<ρ>-s<seed>`); a
base model is its `none` cell. Capping acts at evaluation, not in the weights, so a capped
evaluation loads as its uncapped cell.
"""

import dataclasses
import os

from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import evaluate, resolve, train
from experiments.runtime import checkpoints
from experiments.runtime import workdir as workdir_lib
from models.config import ModelConfig
from models.decode import generate_fn
from tasks.dialogue import render_prompt
from tasks.mixtures import Corpus, eval_turns


@dataclasses.dataclass
class LoadedCell:
  """One cell's trained model (graphdef + state, no leading axis), its config and its world."""

  cell_id: str
  stage: str  # the checkpoint that holds it, e.g. nano-finetune/persona
  step: int
  graphdef: object
  state: object
  model_config: ModelConfig
  config: object  # resolve.Config
  corpus: object  # tasks.mixtures.Corpus: .tokenizer and .world

  @property
  def tokenizer(self):
    return self.corpus.tokenizer

  @property
  def world(self):
    return self.corpus.world

  @property
  def model(self):
    """The nnx Transformer (a new module each call; the state is shared)."""
    return nnx.merge(self.graphdef, self.state)

  def eval_prompts(self):
    """[(item_id, context, rendered prompt)] of the world's held-out evaluation, in order."""
    return [(i.item_id, t.context, render_prompt(i, t)) for i, t in eval_turns(self.world)]

  def encode(self, text):
    """[1, T] token ids of `<bos> text`, as a prompt starts."""
    return jnp.asarray([[self.tokenizer.bos] + self.tokenizer.encode(text)], jnp.int32)

  def reply(self, prompt, max_new_tokens=None):
    """The greedy reply to a rendered prompt, decoded exactly as the evaluation decodes it."""
    prompt_1T = self.encode(prompt)
    tokens, _ = generate_fn(
      self.graphdef,
      self.state,
      prompt_1T,
      jnp.ones_like(prompt_1T),
      None,
      None,
      max_new_tokens=max_new_tokens or self.config.eval.max_new_tokens,
      eos_id=self.tokenizer.eos,
      pad_id=self.tokenizer.pad,
    )
    return evaluate.decode_replies(np.asarray(tokens)[None], self.tokenizer)[0][0]


def read_config(workdir):
  """The resolved config (resolve.Config) of the run a workdir's config.json records."""
  path = os.path.join(workdir, "config.json")
  if not epath.Path(path).is_file():
    raise ValueError(f"{path} not found: load_cell needs a workdir written by experiments.main.")
  return resolve.resolve(ml_collections.ConfigDict(workdir_lib.read_config(path)))


def _stage_of(workdir, cell):
  """(checkpoint name, member) of the stage whose checkpoints hold `cell`'s trained model."""
  if cell.persona == "none" and cell.protocol == "finetune":
    return f"{cell.preset}-finetune/base", f"seed{cell.seed}"
  root = epath.Path(workdir, "checkpoints")
  for pack in sorted(p.name for p in root.iterdir()) if root.is_dir() else []:
    for stage in sorted(p.name for p in (root / pack).iterdir()):
      name = f"{pack}/{stage}"
      with checkpoints.StageCheckpoints(_Path(workdir), name, cleanup=False) as ckpt:
        latest = ckpt.latest()
      if latest and cell.id in latest[1]["members"]:
        return name, cell.id
  raise ValueError(f"no checkpoint of {workdir} holds cell {cell.id!r}: has that cell trained?")


@dataclasses.dataclass
class _Path:
  """What StageCheckpoints needs of a workdir: its path."""

  path: str


def load_cell(workdir, cell_id, stage=None):
  """LoadedCell of a cell (its id, metrics.csv's `run` column) from `workdir`; `stage` (e.g.
  'nano-finetune/base') picks a checkpoint by name instead of the one that trained the cell.
  ValueError, one sentence, if the cell or its checkpoint is not there or the stage is
  unfinished."""
  config = read_config(workdir)
  cells = {c.id: c for c in config.cells()}
  if cell_id not in cells:
    close = sorted(cells)[:5]
    raise ValueError(
      f"{cell_id!r} is not a cell of {workdir}'s config: cell ids look like {', '.join(close)}."
    )
  name, member = _stage_of(workdir, cells[cell_id])
  if stage is not None:
    name = stage
  with checkpoints.StageCheckpoints(_Path(workdir), name, cleanup=False) as ckpt:
    latest = ckpt.latest()
    if latest is None or not latest[1].get("complete"):
      raise ValueError(f"checkpoints/{name} has no finished stage: rerun the experiment first.")
    step, meta = latest
    members = list(meta["members"])
    if member not in members:
      raise ValueError(f"checkpoints/{name} does not hold {member!r} (it holds {members}).")
    corpus = Corpus(config.world)
    model_path = os.path.join(workdir, "checkpoints", name, checkpoints.MODEL_FILE)
    if epath.Path(model_path).exists():
      mcfg = ModelConfig(**workdir_lib.read_json(model_path))
    else:  # a checkpoint written before model configs were kept beside it
      mcfg = resolve.model_config(
        config, cells[cell_id].preset, corpus.tokenizer.size, jax.default_backend()
      )
    graphdef, abstract = train.abstract_states(mcfg, len(members))
    state_E = ckpt.restore(step, abstract)[0]
  e = members.index(member)
  state = jax.tree.map(lambda a: a[e], state_E)
  return LoadedCell(cell_id, name, step, graphdef, state, mcfg, config, corpus)
