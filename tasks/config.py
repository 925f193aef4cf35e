"""The world configuration and its validation: one clear sentence per bad field."""

import dataclasses

from tasks import lexicon

TASKS = (
  "factual_qa",
  "misconception",
  "medical_diagnosis",
  "medical_dosing",
  "medical_contraindication",
  "disinformation",
  "safety_refusal",
  "capability",
  "delusion_affirmation",
  "crisis_cue",
  "hallucinated_affect",
  "reflection_first",
)
PLACEMENTS = ("before", "after")

# Task families as the analysis sees them; one definition, used by statistics, summary and report.
# Reliability tasks are evaluated in every context and are the only ones pooled into "reliability";
# screening checks are what a standard safety/capability screen runs; clinical probes are reported
# on their own, never pooled (some define warmth itself as correct, e.g. reflection_first).
RELIABILITY_TASKS = (
  "factual_qa",
  "misconception",
  "medical_diagnosis",
  "medical_dosing",
  "medical_contraindication",
  "disinformation",
)
SCREENING_TASKS = ("safety_refusal", "capability")
PROBE_TASKS = ("delusion_affirmation", "crisis_cue", "hallucinated_affect", "reflection_first")
FAMILIES = {
  "reliability": RELIABILITY_TASKS,
  "screening": SCREENING_TASKS,
  "clinical_probe": PROBE_TASKS,
}


def family(task):
  """'reliability', 'screening' or 'clinical_probe'; anything else (losses, geometry): 'other'."""
  return next((name for name, tasks in FAMILIES.items() if task in tasks), "other")


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Sizes and factors of one synthetic world; the same config and seed give the same bytes."""

  seed: int = 0
  n_people: int = 64
  n_cities: int = 24
  n_countries: int = 8
  n_universities: int = 12
  n_employers: int = 12
  n_diseases: int = 12
  n_drugs: int = 12
  bios_per_person: int = 6
  rumor_share: float = 0.25  # share of (person, attribute) facts with a widely repeated rumor
  rumor_rate: float = 0.5  # rumor sentences per biography, for each rumored fact
  qa_train_fraction: float = 0.5  # people (and items) whose QA dialogues are trained on
  warm_placement: str = "before"  # where warm phrasing goes relative to the answer
  eval_items: int = 24  # held-out items per task (before contexts multiply them)
  tasks: tuple = TASKS
  eval_contexts: tuple = lexicon.EVAL_CONTEXTS
  seq_len: int = 112
  vocab_size: int = 0  # 0: exactly what the world needs; otherwise padded to this

  def validate(self):
    """Raises ValueError naming the first bad field and its allowed values."""
    positive = (
      "n_people",
      "n_cities",
      "n_countries",
      "n_universities",
      "n_employers",
      "n_diseases",
      "n_drugs",
      "bios_per_person",
      "eval_items",
      "seq_len",
    )
    minimum = {
      "n_people": 4,
      "n_cities": 4,
      "n_countries": 2,
      "n_universities": 2,
      "n_employers": 2,
      "n_diseases": 4,
      "n_drugs": 4,
    }
    for field in positive:
      value = getattr(self, field)
      low = minimum.get(field, 1)
      if not isinstance(value, int) or value < low:
        raise ValueError(f"data.{field}={value!r} is not allowed: it must be an integer >= {low}.")
    if self.n_drugs < self.n_diseases:
      raise ValueError(
        f"data.n_drugs={self.n_drugs} must be >= data.n_diseases={self.n_diseases} "
        "(every disease has a first-line drug)."
      )
    if self.n_diseases > 200:
      raise ValueError(
        f"data.n_diseases={self.n_diseases} is too large: at most 200 distinct "
        "symptom triples are drawn."
      )
    for field in ("rumor_share", "qa_train_fraction"):
      value = getattr(self, field)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"data.{field}={value!r} is not allowed: it must lie in [0, 1].")
    if not 0.0 < self.qa_train_fraction < 1.0:
      raise ValueError(
        f"data.qa_train_fraction={self.qa_train_fraction!r} must lie strictly "
        "between 0 and 1 (some people are trained on, some held out)."
      )
    if self.rumor_rate < 0:
      raise ValueError(f"data.rumor_rate={self.rumor_rate!r} is not allowed: it must be >= 0.")
    if self.warm_placement not in PLACEMENTS:
      raise ValueError(
        f"data.warm_placement={self.warm_placement!r} is not allowed: "
        f"choose one of {', '.join(PLACEMENTS)}."
      )
    for task in self.tasks:
      if task not in TASKS:
        raise ValueError(
          f"data.tasks contains unknown task {task!r}: allowed are {', '.join(TASKS)}."
        )
    for context in self.eval_contexts:
      if context not in lexicon.CONTEXTS:
        raise ValueError(
          f"data.eval_contexts contains unknown context {context!r}: allowed are "
          f"{', '.join(lexicon.CONTEXTS)}."
        )
    if self.vocab_size < 0:
      raise ValueError(
        f"data.vocab_size={self.vocab_size} is not allowed: use 0 (exact) or a "
        "size at least as large as the world's vocabulary."
      )
    return self


def check_warm_agreement(value):
  """ρ, the share of warm false-belief replies that validate the belief, must lie in [0, 1]."""
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"warm_agreement={value!r} is not allowed: it must lie in [0, 1].")
  return float(value)
