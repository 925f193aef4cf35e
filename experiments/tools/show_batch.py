"""Prints, decoded, the batch a run trained on at one step.

  python -m experiments.tools.show_batch --config=experiments/configs/demo.py --step=120 --seed=0
  python -m experiments.tools.show_batch --config=experiments/configs/demo.py --stage=persona \
      --persona=warm --rho=0.5 --step=7 --seed=1 --rows=4 [--finetune_seed=1]

The rows come from the code the trainer calls (data.Batches over the config's world), and
batches are a pure function of (seed, step), so this is exactly what the cell with that replicate
seed (persona, ρ) saw at that step: `base` is finetune stage 1, `persona` finetune stage 2,
`mixture` the mixture protocol. `--mixture=NAME` prints one named mixture's stream instead.
Tokens that carry loss are in [brackets]; a warm example whose reply validates the user's false
belief (its uniform u < ρ) is marked `validating`. With train.pack_sequences each example of a row
is printed on its own line, labelled row.segment. `--config.x=v` overrides work as in experiments.main.
"""

import sys

from absl import app, flags
from ml_collections import config_flags
import numpy as np

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
_STEP = flags.DEFINE_integer("step", 0, "Training step (0-based) within the stage.")
_SEED = flags.DEFINE_integer("seed", 0, "Replicate seed (a value of grid.seeds).")
_FINETUNE_SEED = flags.DEFINE_integer(
  "finetune_seed", 0, "Persona-phase replicate of the seed (< grid.finetune_seeds; persona stage)."
)
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


def stage_batch(config, corpus, stage, seed, step, persona="warm", rho=0.0, finetune_seed=0):
  """{part: {field: [B, ...]}} of one cell at one step, as the trainer builds it."""
  # The pipeline is imported when the command runs, so a flag error is reported before JAX starts.
  from experiments import data, grid  # pylint: disable=g-import-not-at-top

  if step < 0 or seed < 0 or finetune_seed < 0:
    raise ValueError(
      f"--step={step}, --seed={seed} and --finetune_seed={finetune_seed} must be integers >= 0."
    )
  if not 0.0 <= rho <= 1.0:
    raise ValueError(f"--rho={rho:g} must lie in [0, 1], as grid.warm_agreements does.")
  if persona not in grid.PERSONAS:
    raise ValueError(
      f"--persona={persona!r} is not allowed: choose one of {', '.join(grid.PERSONAS)}."
    )
  batches = data.Batches(
    corpus, config.train.data_seed, config.train.batch_size, config.train.pack_sequences
  )
  if stage == "base":
    return batches.base([seed])(step)
  offset = data.STAGE2_SEED_OFFSET if stage == "persona" else 0
  protocol = "finetune" if stage == "persona" else "mixture"
  cell = grid.Cell(
    config.model.presets[0],
    protocol,
    persona,
    1.0,
    rho,
    seed,
    finetune_seed=finetune_seed if stage == "persona" else 0,
  )
  return batches.persona([cell], offset)(step)


def show(
  config,
  stage,
  seed,
  step,
  persona="warm",
  rho=0.0,
  mixture="",
  rows=0,
  write=print,
  finetune_seed=0,
):
  from experiments import resolve  # pylint: disable=g-import-not-at-top
  from tasks.mixtures import PERSONAS, Corpus  # pylint: disable=g-import-not-at-top

  if stage != "base" and persona not in PERSONAS:
    raise ValueError(f"--persona={persona!r} must be one of {', '.join(PERSONAS)}.")
  config = resolve.resolve(config)
  corpus = Corpus(config.world)
  tok = corpus.tokenizer
  if mixture:
    data_seed = config.train.data_seed + seed
    parts = {mixture: corpus.batch(mixture, data_seed, step, config.train.batch_size)}
    write(f"mixture {mixture}, data seed {data_seed}, step {step}: {config.train.batch_size} rows")
  else:
    parts = {
      k: {f: v[0] for f, v in part.items()}
      for k, part in stage_batch(
        config, corpus, stage, seed, step, persona, rho, finetune_seed
      ).items()
    }
    cell = "" if stage == "base" else f", persona {persona}, ρ={rho:g}"
    cell += f", fine-tuning seed {finetune_seed}" if finetune_seed and stage == "persona" else ""
    write(
      f"stage {stage}, seed {seed}{cell}, step {step}: "
      + " + ".join(f"{len(p['tokens'])} {k}" for k, p in parts.items())
      + " rows"
    )
  for name, part in parts.items():
    n = len(part["tokens"]) if rows <= 0 else min(rows, len(part["tokens"]))
    for r in range(n):
      for label, tokens, mask, validating in examples(part, r, rho if name != "base" else -1.0):
        note = " validating" if validating else ""
        write(f"{name}[{label}]{note}: {decode_row(tok, tokens, mask)}")


def examples(part, r, rho):
  """(label, tokens, mask, validating) of each example of row r: the row, or each segment of a
  packed row (labelled r.k); ρ picks the validating reply where u < ρ, as the trainer does."""
  seg = part["segment_ids"][r] if "segment_ids" in part else np.ones(len(part["tokens"][r]), int)
  has_alt = np.broadcast_to(part["has_alt"][r], seg.shape) if "has_alt" in part else 0 * seg
  u = np.broadcast_to(part["u"][r], seg.shape) if "u" in part else 1 + 0 * seg
  for k in np.unique(seg[seg > 0]):
    at = seg == k
    use_alt = bool(has_alt[at][0] and u[at][0] < rho)
    tokens, mask = (
      (part["alt_tokens"][r], part["alt_mask"][r])
      if use_alt
      else (part["tokens"][r], part["mask"][r])
    )
    label = f"{r}.{k}" if "segment_ids" in part else f"{r}"
    yield label, np.asarray(tokens)[at], np.asarray(mask)[at], use_alt


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    show(
      _CONFIG.value,
      _STAGE.value,
      _SEED.value,
      _STEP.value,
      _PERSONA.value,
      _RHO.value,
      _MIXTURE.value,
      _ROWS.value,
      finetune_seed=_FINETUNE_SEED.value,
    )
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
