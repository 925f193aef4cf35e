"""A seeded synthetic world: people, places, diseases, drugs and misconceptions.

Every fact is stored as integer arrays (so a world of millions of people is cheap) and every answer
the task suite asks for is computable from these arrays alone; the tests recompute them from here.
"""

import functools
import itertools
import math

import numpy as np

from tasks import lexicon
from tasks.config import WorldConfig

_ONSETS = (
  "b",
  "d",
  "f",
  "g",
  "k",
  "l",
  "m",
  "n",
  "p",
  "r",
  "s",
  "t",
  "v",
  "z",
  "br",
  "dr",
  "gl",
  "kr",
  "pl",
  "st",
  "tr",
  "sh",
  "th",
  "ch",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
PERSON_ATTRIBUTES = ("birth_city", "birth_date", "university", "field", "employer")


def rng_for(seed, *stream):
  """A numpy Generator that depends only on (seed, stream): no global state, no hash()."""
  return np.random.default_rng([seed, *stream])


def _syllables():
  return [o + v for o in _ONSETS for v in _VOWELS]


def _make_words(rng, count, n_syllables, taken):
  """`count` distinct pronounceable words of `n_syllables` syllables not in `taken`."""
  syl = _syllables()
  total = len(syl) ** n_syllables
  if count > total - len(taken):
    raise ValueError(f"cannot make {count} distinct names of {n_syllables} syllables")
  words = []
  # Draw indices without replacement from the product space, skipping reserved words.
  for idx in rng.permutation(total) if total <= 2_000_000 else _sparse_draw(rng, total, 4 * count):
    parts, rest = [], int(idx)
    for _ in range(n_syllables):
      rest, r = divmod(rest, len(syl))
      parts.append(syl[r])
    word = "".join(parts)
    if word not in taken:
      taken.add(word)
      words.append(word)
      if len(words) == count:
        return words
  raise ValueError(f"cannot make {count} distinct names of {n_syllables} syllables")


def _sparse_draw(rng, total, count):
  return np.unique(rng.integers(0, total, size=count))


class World:
  """The facts of one world. Indices into name lists; `.name_of_*` methods render them."""

  def __init__(self, cfg: WorldConfig):
    self.cfg = cfg.validate()
    s = cfg.seed
    taken = set(lexicon_words())
    n_name_pool = max(8, math.ceil(1.5 * math.sqrt(cfg.n_people)))
    self.first_names = _make_words(rng_for(s, 1), n_name_pool, 2, taken)
    self.last_names = _make_words(
      rng_for(s, 2), n_name_pool, 3 if cfg.n_people > 50_000 else 2, taken
    )
    self.cities = _make_words(rng_for(s, 3), cfg.n_cities, 3, taken)
    self.countries = _make_words(rng_for(s, 4), cfg.n_countries, 2, taken)
    self.universities = _make_words(rng_for(s, 5), cfg.n_universities, 2, taken)
    self.employers = _make_words(rng_for(s, 6), cfg.n_employers, 3, taken)
    self.diseases = _make_words(rng_for(s, 7), cfg.n_diseases, 3, taken)
    self.drugs = _make_words(rng_for(s, 8), cfg.n_drugs, 3, taken)

    rng = rng_for(s, 10)
    n = cfg.n_people
    pairs = rng.choice(n_name_pool * n_name_pool, size=n, replace=False)
    self.person_first, self.person_last = np.divmod(pairs, n_name_pool)
    self.birth_city = rng.integers(0, cfg.n_cities, n)
    self.birth_month = rng.integers(0, 12, n)
    self.birth_day = rng.integers(1, 29, n)
    self.university = rng.integers(0, cfg.n_universities, n)
    self.field = rng.integers(0, len(lexicon.FIELDS), n)
    self.employer = rng.integers(0, cfg.n_employers, n)
    self.city_country = rng.integers(0, cfg.n_countries, cfg.n_cities)

    # Medical domain: distinct overlapping symptom triples; drug i is first-line for disease i.
    rng = rng_for(s, 11)
    triples = list(itertools.combinations(range(len(lexicon.SYMPTOMS)), 3))
    pick = rng.choice(len(triples), size=cfg.n_diseases, replace=False)
    self.disease_symptoms = np.array([triples[i] for i in pick])
    self.drug_treats = np.full(cfg.n_drugs, -1)  # extra drugs are no disease's first line
    self.drug_treats[: cfg.n_diseases] = rng.permutation(cfg.n_diseases)
    self.drug_per_kg = rng.choice(np.array([2, 3, 4, 5, 6, 8, 10, 12, 15, 20]), size=cfg.n_drugs)
    self.drug_max = rng.integers(2, 19, size=cfg.n_drugs) * 50
    self.drug_contra = rng.integers(0, len(lexicon.CONDITIONS), cfg.n_drugs)

    # Train/held-out splits: QA dialogues are trained on one part, evaluated on the other.
    self.person_is_train = split_mask(rng_for(s, 12), n, cfg.qa_train_fraction)
    self.city_is_train = split_mask(rng_for(s, 13), cfg.n_cities, cfg.qa_train_fraction)
    self.disease_is_train = split_mask(rng_for(s, 14), cfg.n_diseases, cfg.qa_train_fraction)
    self.drug_is_train = split_mask(rng_for(s, 15), cfg.n_drugs, cfg.qa_train_fraction)

    # Misconceptions: a widely repeated wrong value for a share of (person, attribute) facts, as an
    # index into attribute_options (-1: none). The share is exact within each split, so a small
    # world still has held-out misconceptions.
    rng = rng_for(s, 16)
    n_facts = n * len(PERSON_ATTRIBUTES)
    chosen = np.zeros(n_facts, bool)
    for side in (True, False):
      facts = np.flatnonzero(np.repeat(self.person_is_train == side, len(PERSON_ATTRIBUTES)))
      chosen[rng.choice(facts, size=round(cfg.rumor_share * len(facts)), replace=False)] = True
    self.rumor_value = np.full((n, len(PERSON_ATTRIBUTES)), -1)
    for a, attribute in enumerate(PERSON_ATTRIBUTES):
      n_options = self.n_options(attribute)
      wrong = (self._true_indices(attribute) + rng.integers(1, n_options, n)) % n_options
      self.rumor_value[:, a] = np.where(chosen.reshape(n, -1)[:, a], wrong, -1)

  # --- rendering of single facts ---
  def person_name(self, i):
    return f"{self.first_names[self.person_first[i]]} {self.last_names[self.person_last[i]]}"

  def attribute_value(self, i, attribute):
    """The rendered true value of a person's attribute."""
    if attribute == "birth_city":
      return self.cities[self.birth_city[i]]
    if attribute == "birth_date":
      return f"{number(self.birth_day[i])} {lexicon.MONTHS[self.birth_month[i]]}"
    if attribute == "university":
      return f"{self.universities[self.university[i]]} university"
    if attribute == "field":
      return lexicon.FIELDS[self.field[i]]
    if attribute == "employer":
      return self.employers[self.employer[i]]
    raise KeyError(attribute)

  def attribute_options(self, attribute):
    """Every value an attribute can take, rendered (the distractor pool)."""
    if attribute == "birth_city":
      return list(self.cities)
    if attribute == "birth_date":
      return [f"{number(d)} {m}" for m in lexicon.MONTHS for d in range(1, 29)]
    if attribute == "university":
      return [f"{u} university" for u in self.universities]
    if attribute == "field":
      return list(lexicon.FIELDS)
    if attribute == "employer":
      return list(self.employers)
    raise KeyError(attribute)

  def n_options(self, attribute):
    """How many values an attribute can take (the length of attribute_options)."""
    sizes = {
      "birth_city": self.cfg.n_cities,
      "birth_date": 12 * 28,
      "university": self.cfg.n_universities,
      "field": len(lexicon.FIELDS),
      "employer": self.cfg.n_employers,
    }
    return sizes[attribute]

  def _true_indices(self, attribute):
    """Every person's true value of an attribute, as indices into attribute_options."""
    if attribute == "birth_city":
      return self.birth_city
    if attribute == "birth_date":
      return self.birth_month * 28 + self.birth_day - 1
    if attribute == "university":
      return self.university
    if attribute == "field":
      return self.field
    if attribute == "employer":
      return self.employer
    raise KeyError(attribute)

  def attribute_index(self, i, attribute):
    """The index of a person's true value in attribute_options(attribute)."""
    return int(self._true_indices(attribute)[i])

  def rumor(self, i, attribute):
    """The rendered rumored value of a person's attribute, or None where there is no rumor."""
    k = self.rumor_value[i, PERSON_ATTRIBUTES.index(attribute)]
    return None if k < 0 else self.attribute_options(attribute)[k]

  def dose(self, drug, weight):
    """The correct dose in mg: weight × mg/kg, capped at the drug's maximum."""
    return int(min(weight * self.drug_per_kg[drug], self.drug_max[drug]))

  def first_line_drug(self, disease):
    return int(np.flatnonzero(self.drug_treats == disease)[0])

  def symptoms_of(self, disease):
    return [lexicon.SYMPTOMS[k] for k in self.disease_symptoms[disease]]

  def words(self):
    """Every generated name, for the vocabulary."""
    return (
      self.first_names
      + self.last_names
      + self.cities
      + self.countries
      + self.universities
      + self.employers
      + self.diseases
      + self.drugs
    )


def split_mask(rng, n, fraction):
  """A boolean mask with round(fraction·n) True entries (at least one of each side)."""
  k = min(max(1, round(fraction * n)), n - 1)
  mask = np.zeros(n, bool)
  mask[rng.permutation(n)[:k]] = True
  return mask


def number(n):
  """Numbers are written digit by digit, so arithmetic is learnable over a closed vocabulary."""
  return " ".join(str(int(n)))


@functools.lru_cache(maxsize=1)
def lexicon_words():
  """Every word used by the fixed text of the world (templates with placeholders removed)."""
  words = set()

  def visit(obj):
    if isinstance(obj, str):
      for w in obj.split():
        if not (w.startswith("{") and w.endswith("}")):
          words.add(w)
    elif isinstance(obj, dict):
      for k, v in obj.items():
        visit(k)
        visit(v)
    elif isinstance(obj, (list, tuple)):
      for v in obj:
        visit(v)

  for name in dir(lexicon):
    if name.isupper():
      visit(getattr(lexicon, name))
  return tuple(sorted(words))
