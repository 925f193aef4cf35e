"""TFDS builder `warmth_sim`: each training component and the eval grid as array_record files.

Build one config (no TensorFlow needed; `tfds build` imports it, so use this instead):

  python -m tasks.tfds_builder --data_dir=DIR --config=warm

Config names are `COMPONENT[-PRESET][-FIELD.VALUE]...`:
  COMPONENT    documents | neutral_dialogues | warm | cold | length_matched | roleplay | eval
  PRESET       small (the default: `WorldConfig()`) | tiny (a test-sized world)
  FIELD.VALUE  a `WorldConfig` field that differs from the preset, e.g. `warm-tiny-seed.3` or
               `cold-rumor_share.0.5`; tuple fields (tasks, eval_contexts) list indices into
               `config.TASKS` / `lexicon.CONTEXTS` joined by `+` (`eval-tiny-eval_contexts.0+2`).
`config_name(component, world)` gives the one canonical name of any world (fields in dataclass
order, the preset with the fewest overrides) and `parse_config_name` inverts it, so a world and
its name always map to the same directory. The full world is also stored in the dataset metadata,
which `tasks.tfds_source` checks before handing out arrays.

Record i of a training component is row i of `Corpus(world).<component>` (shuffling is disabled;
the training stream shuffles per seed and epoch). Record i of `eval` is row i of `build_eval_set`.
"""

import argparse
import dataclasses
import sys

import numpy as np
import tensorflow_datasets as tfds

from tasks import config as config_lib
from tasks import lexicon
from tasks.config import WorldConfig
from tasks.mixtures import Corpus, build_eval_set

NAME = "warmth_sim"
COMPONENTS = (
  "documents",
  "neutral_dialogues",
  "warm",
  "cold",
  "length_matched",
  "warm_after",
  "roleplay",
  "eval",
)
PRESETS = {
  "small": WorldConfig(),
  "tiny": WorldConfig(
    n_people=24,
    n_cities=8,
    n_countries=4,
    n_universities=4,
    n_employers=4,
    n_diseases=4,
    n_drugs=4,
    bios_per_person=2,
    eval_items=4,
  ),
}
# Tuple fields are written as indices into these, since some of their values contain "+".
_TUPLE_VOCAB = {"tasks": config_lib.TASKS, "eval_contexts": lexicon.CONTEXTS}
_FIELDS = {f.name: f for f in dataclasses.fields(WorldConfig)}


def split_of(component):
  """The one split a component is written to."""
  return "test" if component == "eval" else "train"


def _encode_value(field, value):
  if field in _TUPLE_VOCAB:
    vocab = _TUPLE_VOCAB[field]
    bad = [v for v in value if v not in vocab]
    if bad:
      raise ValueError(f"data.{field} contains {bad[0]!r}: allowed are {', '.join(vocab)}.")
    return "+".join(str(vocab.index(v)) for v in value)
  if isinstance(value, float):
    # Positional notation: an exponent's "-" would clash with the field separator.
    return np.format_float_positional(value, trim="-")
  return str(value)


def _decode_value(field, text):
  if field in _TUPLE_VOCAB:
    vocab = _TUPLE_VOCAB[field]
    return tuple(vocab[int(k)] for k in text.split("+"))
  default = _FIELDS[field].default
  return type(default)(text)


def config_name(component, world=PRESETS["small"]):
  """The canonical builder config name of a component of a world."""
  if component not in COMPONENTS:
    raise ValueError(
      f"component={component!r} is not allowed: choose one of {', '.join(COMPONENTS)}."
    )
  best = None
  for preset, base in PRESETS.items():
    diffs = [f for f in _FIELDS if getattr(world, f) != getattr(base, f)]
    if best is None or len(diffs) < len(best[1]):
      best = (preset, diffs)
  preset, diffs = best
  parts = [component] + ([preset] if preset != "small" else [])
  parts += [f"{f}.{_encode_value(f, getattr(world, f))}" for f in diffs]
  return "-".join(parts)


def parse_config_name(name):
  """(component, WorldConfig) of a config name; raises ValueError naming what is wrong."""
  component, *rest = name.split("-")
  if component not in COMPONENTS:
    raise ValueError(
      f"config={name!r}: unknown component {component!r}; allowed are {', '.join(COMPONENTS)}."
    )
  world = PRESETS["small"]
  if rest and rest[0] in PRESETS:
    world = PRESETS[rest.pop(0)]
  overrides = {}
  for part in rest:
    field, dot, text = part.partition(".")
    if not dot or field not in _FIELDS:
      raise ValueError(
        f"config={name!r}: {part!r} is not a preset ({', '.join(PRESETS)}) nor "
        f"FIELD.VALUE with FIELD one of {', '.join(_FIELDS)}."
      )
    try:
      overrides[field] = _decode_value(field, text)
    except (ValueError, IndexError):
      raise ValueError(f"config={name!r}: cannot read data.{field} from {text!r}.") from None
  return component, dataclasses.replace(world, **overrides).validate()


def world_to_json(world):
  """The world config as JSON-compatible values (tuples as lists), for the dataset metadata."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(world).items()}


@dataclasses.dataclass(eq=False)
class WarmthSimConfig(tfds.core.BuilderConfig):
  """One component of one world; the name is `config_name(component, world)`."""

  component: str = "documents"
  world: WorldConfig = PRESETS["small"]


def make_config(component, world=PRESETS["small"]):
  """The builder config of a component of a world (named canonically)."""
  # The full world is in the dataset metadata; the description stays short for logs.
  return WarmthSimConfig(
    name=config_name(component, world),
    component=component,
    world=world,
    description=f"warmth-sim {component}",
  )


class WarmthSim(tfds.core.GeneratorBasedBuilder, skip_registration=__name__ == "__main__"):
  """warmth-sim token sets; any `COMPONENT[-PRESET][-FIELD.VALUE]...` name is accepted."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "First release: documents, neutral dialogues, warm/cold/length-matched persona "
    "sets, role-play and the eval grid, written as array_record in generator order.",
  }
  BUILDER_CONFIGS = [make_config(c, w) for w in PRESETS.values() for c in COMPONENTS]

  def __init__(self, *, config=None, file_format="array_record", **kwargs):
    # Names outside BUILDER_CONFIGS encode their world: build the config object from the name.
    if isinstance(config, str) and config not in self.builder_configs:
      config = make_config(*parse_config_name(config))
    super().__init__(config=config, file_format=file_format, **kwargs)

  def _info(self):
    cfg = self.builder_config
    if cfg.component == "eval":
      features = {
        "prompt": tfds.features.Tensor(shape=(None,), dtype=np.int32),  # <bos> prompt, unpadded
        "task": tfds.features.Text(),
        "context": tfds.features.Text(),
        "emotion": tfds.features.Text(),  # "" where the context discloses none
        "variant": tfds.features.Scalar(dtype=np.int32),
        "item_id": tfds.features.Text(),
        "text": tfds.features.Text(),
      }
    else:
      t = cfg.world.seq_len
      features = {
        "tokens": tfds.features.Tensor(shape=(t,), dtype=np.int32),
        "mask": tfds.features.Tensor(shape=(t,), dtype=np.uint8),
        "alt_tokens": tfds.features.Tensor(shape=(t,), dtype=np.int32),
        "alt_mask": tfds.features.Tensor(shape=(t,), dtype=np.uint8),
        "has_alt": tfds.features.Scalar(dtype=np.bool_),
        "text": tfds.features.Text(),
      }
    return self.dataset_info_from_configs(
      description=__doc__.splitlines()[0],
      features=tfds.features.FeaturesDict(features),
      metadata=tfds.core.MetadataDict(world=world_to_json(cfg.world), component=cfg.component),
      disable_shuffling=True,  # record i must be row i of the in-memory set
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the world is generated from its config
    return {split_of(self.builder_config.component): self._generate_examples()}

  def _generate_examples(self):
    cfg = self.builder_config
    corpus = Corpus(cfg.world)
    tok = corpus.tokenizer
    if cfg.component == "eval":
      evals = build_eval_set(corpus)
      for r, (item, turn) in enumerate(zip(evals.items, evals.turns)):
        prompt = evals.prompts[r][evals.prompt_mask[r] == 1]
        yield (
          r,
          {
            "prompt": prompt,
            "task": item.task,
            "context": turn.context,
            "emotion": turn.emotion or "",
            "variant": turn.variant,
            "item_id": item.item_id,
            "text": tok.decode(prompt, stop_at_eos=False),
          },
        )
      return
    data = corpus.component(cfg.component)
    for r in range(len(data)):
      yield (
        r,
        {
          "tokens": data.tokens[r],
          "mask": data.mask[r],
          "alt_tokens": data.alt_tokens[r],
          "alt_mask": data.alt_mask[r],
          "has_alt": bool(data.has_alt[r]),
          "text": tok.decode(data.tokens[r], stop_at_eos=False),
        },
      )


def builder(data_dir, config):
  """The `warmth_sim` builder of a config name (or `WarmthSimConfig`) under data_dir."""
  return WarmthSim(data_dir=data_dir, config=config)


def prepare(data_dir, config_name_or_config="documents"):
  """Writes one config under data_dir (a no-op if already there); returns the builder."""
  b = builder(data_dir, config_name_or_config)
  b.download_and_prepare(
    file_format="array_record",
    # Nothing to fetch; never ask the network whether a prepared copy exists somewhere.
    download_config=tfds.download.DownloadConfig(try_download_gcs=False),
  )
  return b


def main(argv=None):
  parser = argparse.ArgumentParser(
    prog="python -m tasks.tfds_builder",
    description="Writes one warmth_sim config as array_record (no TensorFlow needed).",
  )
  parser.add_argument("--data_dir", required=True, help="TFDS data directory to write into.")
  parser.add_argument(
    "--config",
    default="documents",
    help="COMPONENT[-PRESET][-FIELD.VALUE]...; components: "
    + ", ".join(COMPONENTS)
    + "; presets: "
    + ", ".join(PRESETS)
    + ".",
  )
  args = parser.parse_args(argv)
  try:
    b = prepare(args.data_dir, args.config)
  except ValueError as e:
    parser.exit(2, f"error: {e}\n")
  split = split_of(b.builder_config.component)
  print(
    f"{NAME}/{b.builder_config.name}: {b.info.splits[split].num_examples} {split} records "
    f"in {b.data_dir}"
  )


if __name__ == "__main__":
  # The builder must be registered from the package, not from __main__ (whose copy of the class
  # skipped registration above), so run the package module's main.
  from tasks import tfds_builder  # pylint: disable=import-self

  tfds_builder.main(sys.argv[1:])
