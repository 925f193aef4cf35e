"""Prints, decoded, the batch a run trained on at one step.

  python -m experiments.tools.show_batch --config=experiments/configs/demo.py --step=120 --seed=0
  python -m experiments.tools.show_batch --config=experiments/configs/demo.py --stage=persona \
      --persona=warm --rho=0.5 --step=7 --seed=1 --rows=4

The rows come from the code the trainer calls (data.Batches over the config's world), and
batches are a pure function of (seed, step), so this is exactly what the cell with that replicate
seed (persona, ρ) saw at that step: `base` is finetune stage 1, `persona` finetune stage 2,
`mixture` the mixture protocol. `--mixture=NAME` prints one named mixture's stream instead.
Tokens that carry loss are in [brackets]; a warm row whose reply validates the user's false belief
(its uniform u < ρ) is marked `validating`. `--config.x=v` overrides work as in experiments.main.
"""
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
_STEP = flags.DEFINE_integer("step", 0, "Training step (0-based) within the stage.")
_SEED = flags.DEFINE_integer("seed", 0, "Replicate seed (a value of grid.seeds).")
_STAGE = flags.DEFINE_enum("stage", "base", ["base", "persona", "mixture"], "Which stage's stream.")
_PERSONA = flags.DEFINE_string("persona", "warm", "Persona of the cell (persona/mixture stages).")
_RHO = flags.DEFINE_float("rho", 0.0, "Warm agreement ρ of the cell (persona/mixture stages).")
_MIXTURE = flags.DEFINE_string("mixture", "", "Print this named mixture's stream instead.")
_ROWS = flags.DEFINE_integer("rows", 0, "Print at most this many rows per part (0: all).")
flags.mark_flags_as_required(["config"])


def decode_row(tokenizer, tokens, mask):
  """The row's words with the loss-bearing spans in [brackets]; padding dropped."""
  out, inside = [], False
  for t, m in zip(tokens, mask):
    if t == tokenizer.pad:
      continue
    if m and not inside:
      out.append("[")
    if not m and inside:
      out.append("]")
    inside = bool(m)
    out.append(tokenizer.words[int(t)])
  if inside:
    out.append("]")
  return " ".join(out).replace("[ ", "[").replace(" ]", "]")


def stage_batch(config, corpus, stage, seed, step, persona="warm", rho=0.0):
  """{part: {field: [B, ...]}} of one cell at one step, as the trainer builds it."""
  from experiments import data, grid  # pylint: disable=g-import-not-at-top
  batches = data.Batches(corpus, config.train.data_seed, config.train.batch_size)
  if stage == "base":
    return batches.base([seed])(step)
  offset = data.STAGE2_SEED_OFFSET if stage == "persona" else 0
  protocol = "finetune" if stage == "persona" else "mixture"
  cell = grid.Cell(config.model.presets[0], protocol, persona, 1.0, rho, seed)
  return batches.persona([cell], offset)(step)


def show(config, stage, seed, step, persona="warm", rho=0.0, mixture="", rows=0, write=print):
  from experiments import experiment  # pylint: disable=g-import-not-at-top
  from tasks.mixtures import PERSONAS, Corpus  # pylint: disable=g-import-not-at-top
  if stage != "base" and persona not in PERSONAS:
    raise ValueError(f"--persona={persona!r} must be one of {', '.join(PERSONAS)}.")
  corpus = Corpus(experiment.validate(config)[0])
  tok = corpus.tokenizer
  if mixture:
    data_seed = config.train.data_seed + seed
    parts = {mixture: corpus.batch(mixture, data_seed, step, config.train.batch_size)}
    write(f"mixture {mixture}, data seed {data_seed}, step {step}: {config.train.batch_size} rows")
  else:
    parts = {k: {f: v[0] for f, v in part.items()}
             for k, part in stage_batch(config, corpus, stage, seed, step, persona, rho).items()}
    cell = "" if stage == "base" else f", persona {persona}, ρ={rho:g}"
    write(f"stage {stage}, seed {seed}{cell}, step {step}: "
          + " + ".join(f"{len(p['tokens'])} {k}" for k, p in parts.items()) + " rows")
  for name, part in parts.items():
    n = len(part["tokens"]) if rows <= 0 else min(rows, len(part["tokens"]))
    for r in range(n):
      tokens, mask, note = part["tokens"][r], part["mask"][r], ""
      if "u" in part and part["has_alt"][r] and part["u"][r] < rho and name != "base":
        tokens, mask, note = part["alt_tokens"][r], part["alt_mask"][r], " validating"
      write(f"{name}[{r}]{note}: {decode_row(tok, np.asarray(tokens), np.asarray(mask))}")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    show(_CONFIG.value, _STAGE.value, _SEED.value, _STEP.value, _PERSONA.value, _RHO.value,
         _MIXTURE.value, _ROWS.value)
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
