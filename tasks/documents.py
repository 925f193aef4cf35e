"""Pretraining documents: biographies, city facts, medical reference sentences and rumors."""

import numpy as np

from tasks import lexicon
from tasks.items import DOSING_WEIGHTS, symptom_list
from tasks.world import PERSON_ATTRIBUTES, World, number, rng_for


def biographies(world: World):
  """Several biographies per person, each with one random template per fact, sentences shuffled."""
  rng = rng_for(world.cfg.seed, 50)
  docs = []
  for i in range(world.cfg.n_people):
    name = world.person_name(i)
    for _ in range(world.cfg.bios_per_person):
      sentences = []
      for attribute in PERSON_ATTRIBUTES:
        templates = lexicon.BIO_TEMPLATES[attribute]
        sentences.append(
          templates[rng.integers(len(templates))].format(
            name=name, value=world.attribute_value(i, attribute)
          )
        )
      docs.append(" ".join(sentences[k] for k in rng.permutation(len(sentences))))
  return docs


def rumors(world: World):
  """Misconceptions repeated in the corpus: `rumor_rate` rumor sentences per biography.

  Each rumored fact gets rumor_rate × bios_per_person sentences in expectation, each worded with a
  random biography template (the truth's own wording distribution), so at the default rate the
  truth is stated twice as often as the rumor.
  """
  rng = rng_for(world.cfg.seed, 51)
  docs = []
  expected = world.cfg.rumor_rate * world.cfg.bios_per_person
  for i, a in zip(*np.nonzero(world.rumor_value >= 0)):
    attribute = PERSON_ATTRIBUTES[a]
    name, value = world.person_name(i), world.rumor(i, attribute)
    count = int(expected) + int(rng.random() < expected - int(expected))
    for _ in range(count):
      claim = _pick(rng, lexicon.BIO_TEMPLATES[attribute]).format(name=name, value=value)
      docs.append(_pick(rng, lexicon.RUMOR_TEMPLATES).format(claim=claim))
  return docs


def city_facts(world: World):
  rng = rng_for(world.cfg.seed, 52)
  docs = []
  for c in range(world.cfg.n_cities):
    for t in rng.permutation(len(lexicon.CITY_TEMPLATES))[:2]:
      docs.append(
        lexicon.CITY_TEMPLATES[t].format(
          name=world.cities[c], value=world.countries[world.city_country[c]]
        )
      )
  return docs


def medical_reference(world: World, copies=None):
  """Disease, presentation and drug reference entries; `copies` differently-worded ones each."""
  copies = copies or world.cfg.bios_per_person
  rng = rng_for(world.cfg.seed, 53)
  docs = []
  for _ in range(copies):
    docs += [
      _disease_entry(world, rng, d, lexicon.DISEASE_TEMPLATES) for d in range(world.cfg.n_diseases)
    ]
    for g in range(world.cfg.n_drugs):
      drug = world.drugs[g]
      sentences = [
        _pick(rng, lexicon.DRUG_TEMPLATES["dose"]).format(
          drug=drug, per_kg=number(world.drug_per_kg[g]), max=number(world.drug_max[g])
        ),
        _pick(rng, lexicon.DRUG_TEMPLATES["contra"]).format(
          drug=drug, condition=lexicon.CONDITIONS[world.drug_contra[g]]
        ),
      ]
      if world.drug_treats[g] >= 0:
        sentences.append(
          _pick(rng, lexicon.DRUG_TEMPLATES["treats"]).format(
            drug=drug, disease=world.diseases[world.drug_treats[g]]
          )
        )
      docs.append(" ".join(sentences[k] for k in rng.permutation(len(sentences))))
  return docs + presentations(world, copies)


def presentations(world: World, copies=None):
  """Presentation-to-disease entries (symptoms first), `copies` per disease, each its own document.

  On their own, so the disease name is not already in context when the symptoms are read: the
  model has to recall it, as a held-out diagnosis question asks.
  """
  copies = copies or world.cfg.bios_per_person
  rng = rng_for(world.cfg.seed, 54)
  docs = []
  for _ in range(copies):
    docs += [
      _disease_entry(world, rng, d, lexicon.PRESENTATION_TEMPLATES)
      for d in range(world.cfg.n_diseases)
    ]
  return docs


def _disease_entry(world, rng, d, templates):
  """One sentence naming disease d and its symptoms (in a random order) in a random template."""
  symptoms = [world.symptoms_of(d)[k] for k in rng.permutation(3)]
  return _pick(rng, templates).format(name=world.diseases[d], symptoms=symptom_list(symptoms))


def _pick(rng, options):
  return options[rng.integers(len(options))]


def times_table(world: World):
  """`w times k is p .` for every body weight a dosing item can ask about and every per-kg dose
  of the world's drugs: the reference table a dosing answer's first step looks up, so a dose is
  recall plus one comparison, not multiplication the model must invent from a few hundred
  examples. It states arithmetic only; no drug, item or persona appears in it."""
  return [
    f"{number(w)} times {number(k)} is {number(w * k)} ."
    for k in sorted(set(int(v) for v in world.drug_per_kg))
    for w in DOSING_WEIGHTS
  ]


def all_documents(world: World):
  """The pretraining corpus, in a fixed order (the mixture shuffles it per seed and epoch)."""
  return (
    biographies(world)
    + city_facts(world)
    + medical_reference(world)
    + rumors(world)
    + times_table(world)
  )
