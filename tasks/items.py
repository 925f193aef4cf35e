"""Task families: question items with gold answers, options and belief claims, per split.

An `Item` holds the content of one request; `tasks.dialogue` puts it into a context and a style.
Every gold answer here is computed from the `World` arrays, and `tests/tasks/test_items.py` recomputes
them independently.
"""

import dataclasses
import itertools

import numpy as np

from tasks import lexicon
from tasks.world import PERSON_ATTRIBUTES, World, number, rng_for, split_mask

# Body weights (kg) a dosing item may ask about, in steps of 5 kg as on a dosing chart: the times
# table the documents state then has 18 rows per per-kg dose rather than 95, small enough for a
# CPU-sized model to learn (every product still has to be recalled; none is guessable).
DOSING_WEIGHTS = np.arange(10, 100, 5)

# Which contexts each task is evaluated in. Clinical probes carry their context in their
# definition: a crisis cue is distressed by construction, hallucinated affect needs a user who
# expressed nothing, reflection-first needs a disclosure.
TASK_CONTEXTS = {
  "delusion_affirmation": ("neutral", "emotional"),
  "crisis_cue": ("emotional",),
  "hallucinated_affect": ("neutral", "false_belief"),
  "reflection_first": ("emotional", "emotional+false_belief"),
}
# Probes built from factual questions: their training dialogues would duplicate factual_qa.
DERIVED_TASKS = ("hallucinated_affect", "reflection_first")


@dataclasses.dataclass(frozen=True)
class Item:
  """One request with its gold content; `kind` says how a generated reply is graded."""

  task: str
  item_id: str
  split: str  # "train" or "eval"
  question: str
  answer_template: str  # the neutral answer content, with {value} for the gold slot
  gold: str  # the value a correct reply states
  kind: str  # value | number | yesno | refuse | refuse_correct | no_affirm | safety | no_affect | ack_first
  options: tuple = ()  # multiple-choice values (gold included), for log-likelihood scoring
  claim_true: str | None = None  # a true statement the user may state as a belief
  claim_false: str | None = None  # a false statement the user may state as a belief
  false_value: str | None = None  # the value the false claim asserts
  inherent_false_belief: bool = False  # the request itself asserts something false
  option_answers: tuple = ()  # full answers per option, where the wording depends on the value

  def answer_for(self, value):
    """The neutral answer content asserting `value` (the gold one, a distractor, a rumor)."""
    if self.option_answers:
      return self.option_answers[self.options.index(value)]
    return self.answer_template.format(value=value)

  @property
  def answer(self):
    return self.answer_for(self.gold)


def build_items(world: World, task: str, split: str):
  """All items of one task family and split, in a deterministic order."""
  return _BUILDERS[task](world, split == "train", split)


def eval_items(world: World, task: str):
  """The held-out items of a task, subsampled to `eval_items` deterministically."""
  items = build_items(world, task, "eval")
  k = world.cfg.eval_items
  if len(items) <= k:
    return items
  keep = np.sort(
    rng_for(world.cfg.seed, 20, _TASK_INDEX[task]).choice(len(items), k, replace=False)
  )
  return [items[i] for i in keep]


def _distractors(rng, pool, gold, k=3):
  others = [v for v in pool if v != gold]
  picks = rng.choice(len(others), size=min(k, len(others)), replace=False)
  return [others[i] for i in picks]


def _options(rng, gold, distractors):
  opts = [gold] + list(distractors)
  return tuple(opts[i] for i in rng.permutation(len(opts)))


def _factual(world, train, split):
  items = []
  rng = rng_for(world.cfg.seed, 21, int(train))
  for i in np.flatnonzero(world.person_is_train == train):
    name = world.person_name(i)
    for a, attribute in enumerate(PERSON_ATTRIBUTES):
      if world.rumor_value[i, a] >= 0:
        continue  # rumored facts are the misconception task
      items.append(_attribute_item(world, rng, "factual_qa", split, i, name, attribute))
  for c in np.flatnonzero(world.city_is_train == train):
    gold = world.countries[world.city_country[c]]
    wrong = _distractors(rng, world.countries, gold)
    tmpl = lexicon.ANSWER_TEMPLATES["country"].replace("{name}", world.cities[c])
    q = lexicon.QUESTION_TEMPLATES["country"][rng.integers(2)].format(name=world.cities[c])
    items.append(
      Item(
        "factual_qa",
        f"factual_qa/c{c}",
        split,
        q,
        tmpl,
        gold,
        "value",
        _options(rng, gold, wrong),
        tmpl.format(value=gold),
        tmpl.format(value=wrong[0]),
        wrong[0],
      )
    )
  return items


def _attribute_item(world, rng, task, split, i, name, attribute, false_value=None):
  gold = world.attribute_value(i, attribute)
  wrong = _distractors(rng, world.attribute_options(attribute), gold)
  if false_value is not None:
    wrong = [false_value] + [w for w in wrong if w != false_value][:2]
  tmpl = lexicon.ANSWER_TEMPLATES[attribute].replace("{name}", name)
  templates = lexicon.QUESTION_TEMPLATES[attribute]
  q = templates[rng.integers(len(templates))].format(name=name)
  return Item(
    task,
    f"{task}/p{i}/{attribute}",
    split,
    q,
    tmpl,
    gold,
    "value",
    _options(rng, gold, wrong),
    tmpl.format(value=gold),
    tmpl.format(value=wrong[0]),
    wrong[0],
  )


def _misconception(world, train, split):
  """Every rumored fact of the split; the rumor is the first distractor and the false belief."""
  rng = rng_for(world.cfg.seed, 22, int(train))
  items = []
  for i in np.flatnonzero(world.person_is_train == train):
    for a, attribute in enumerate(PERSON_ATTRIBUTES):
      if world.rumor_value[i, a] >= 0:
        items.append(
          _attribute_item(
            world,
            rng,
            "misconception",
            split,
            i,
            world.person_name(i),
            attribute,
            false_value=world.rumor(i, attribute),
          )
        )
  return items


def symptom_list(words):
  return " , ".join(words[:-1]) + " and " + words[-1]


def _diagnosis(world, train, split):
  rng = rng_for(world.cfg.seed, 23, int(train))
  items = []
  for d in np.flatnonzero(world.disease_is_train == train):
    gold = world.diseases[d]
    shared = [
      int(np.intersect1d(world.disease_symptoms[d], world.disease_symptoms[o]).size)
      for o in range(world.cfg.n_diseases)
    ]
    # Hardest distractors first: diseases sharing the most symptoms.
    order = sorted(
      (o for o in range(world.cfg.n_diseases) if o != d), key=lambda o: (-shared[o], o)
    )
    wrong = [world.diseases[o] for o in order[:3]]
    for p, perm in enumerate(itertools.permutations(world.symptoms_of(d))):
      q = lexicon.DIAGNOSIS_QUESTION[p % 2].format(symptoms=symptom_list(perm))
      items.append(
        Item(
          "medical_diagnosis",
          f"medical_diagnosis/d{d}/o{p}",
          split,
          q,
          lexicon.DIAGNOSIS_ANSWER,
          gold,
          "value",
          _options(rng, gold, wrong),
          lexicon.CLAIMS["diagnosis"].format(value=gold),
          lexicon.CLAIMS["diagnosis"].format(value=wrong[0]),
          wrong[0],
        )
      )
  return items


def _dosing(world, train, split):
  rng = rng_for(world.cfg.seed, 24, int(train))
  items = []
  for d in np.flatnonzero(world.drug_is_train == train):
    disease = world.drug_treats[d]
    disease_name = world.diseases[disease] if disease >= 0 else lexicon.UNTREATED
    # A training drug's whole dosing chart (every weight), so the last step, the smaller of the
    # product and the limit, is seen on both sides of the limit; eight weights per held-out drug.
    weights = DOSING_WEIGHTS if train else rng.choice(DOSING_WEIGHTS, size=8, replace=False)
    for weight in weights:
      per_kg, cap = int(world.drug_per_kg[d]), int(world.drug_max[d])
      product, gold = int(weight) * per_kg, world.dose(d, weight)
      tmpl = lexicon.DOSING_ANSWER.format(
        weight=number(weight),
        per_kg=number(per_kg),
        product=number(product),
        max=number(cap),
        value="{value}",
      )
      wrong = sorted({product, cap, gold + per_kg, max(per_kg, gold - per_kg)} - {gold})[:3]
      q = lexicon.DOSING_QUESTION[rng.integers(2)].format(
        disease=disease_name, weight=number(weight), drug=world.drugs[d]
      )
      false = number(wrong[0])
      items.append(
        Item(
          "medical_dosing",
          f"medical_dosing/d{d}/w{weight}",
          split,
          q,
          tmpl,
          number(gold),
          "number",
          _options(rng, number(gold), [number(w) for w in wrong]),
          lexicon.CLAIMS["dose"].format(value=number(gold)),
          lexicon.CLAIMS["dose"].format(value=false),
          false,
        )
      )
  return items


def _contraindication(world, train, split):
  rng = rng_for(world.cfg.seed, 25, int(train))
  items = []
  for d in np.flatnonzero(world.drug_is_train == train):
    contra = int(world.drug_contra[d])
    safe = [c for c in range(len(lexicon.CONDITIONS)) if c != contra]
    for c in [contra] + list(rng.choice(safe, size=2, replace=False)):
      cond, drug = lexicon.CONDITIONS[c], world.drugs[d]
      gold = "no" if c == contra else "yes"
      answers = tuple(
        lexicon.CONTRA_ANSWER[o].format(drug=drug, condition=cond) for o in ("yes", "no")
      )
      claims = {
        v: lexicon.CLAIMS[f"contra_{v}"].format(drug=drug, condition=cond) for v in ("yes", "no")
      }
      false = "yes" if gold == "no" else "no"
      q = lexicon.CONTRA_QUESTION[rng.integers(2)].format(condition=cond, drug=drug)
      items.append(
        Item(
          "medical_contraindication",
          f"medical_contraindication/d{d}/c{c}",
          split,
          q,
          "{value}",
          gold,
          "yesno",
          ("yes", "no"),
          claims[gold],
          claims[false],
          false,
          option_answers=answers,
        )
      )
  return items


def _disinformation(world, train, split):
  rng = rng_for(world.cfg.seed, 26, int(train))
  items = []
  for i in np.flatnonzero(world.person_is_train == train):
    name, truth = world.person_name(i), world.cities[world.birth_city[i]]
    false = world.rumor(i, "birth_city") or _distractors(rng, world.cities, truth, 1)[0]
    fact = lexicon.ANSWER_TEMPLATES["birth_city"].replace("{name}", name)
    claim = fact.format(value=false)
    q = lexicon.DISINFO_REQUEST[rng.integers(2)].format(claim=claim)
    tmpl = lexicon.DISINFO_ANSWER.format(truth=fact)
    items.append(
      Item(
        "disinformation",
        f"disinformation/p{i}",
        split,
        q,
        tmpl,
        truth,
        "refuse_correct",
        _options(rng, truth, [false]),
        fact.format(value=truth),
        claim,
        false,
        inherent_false_belief=True,
      )
    )
  return items


def _split_list(world, stream, values):
  """A deterministic train/eval split of a fixed list (harms, delusions)."""
  return split_mask(rng_for(world.cfg.seed, stream), len(values), world.cfg.qa_train_fraction)


def _safety(world, train, split):
  mask = _split_list(world, 27, lexicon.HARMS)
  items = []
  for h in np.flatnonzero(mask == train):
    for t, template in enumerate(lexicon.HARM_REQUEST):
      items.append(
        Item(
          "safety_refusal",
          f"safety_refusal/h{h}/t{t}",
          split,
          template.format(harm=lexicon.HARMS[h]),
          lexicon.REFUSAL,
          "",
          "refuse",
          claim_false=lexicon.CLAIMS["safety"],
        )
      )
  return items


CAPABILITY_WORDS = tuple(lexicon.MONTHS + lexicon.FIELDS + lexicon.SYMPTOMS)
# Word sequences per split. Training sees many sequences, each in one context (SKILL_TASKS), rather
# than a few in every context: copying is then cheaper to learn than memorising the pairs.
CAPABILITY_ITEMS = {"train": 1000, "eval": 200}
# Tasks that test a skill over arbitrary content: each training item is put in one context (they
# cycle), so the task's training turns are spread over as many distinct items as possible.
SKILL_TASKS = ("capability",)


def _capability(world, train, split):
  """Repeat a short sequence of words back: an instruction a capable model follows for any words,
  so held-out sequences (no training dialogue asks for them) are learnable by construction, as a
  standard capability screen's items are. The false claim is the same words in reverse order."""
  rng = rng_for(world.cfg.seed, 28)
  n, k = len(CAPABILITY_WORDS), lexicon.CAPABILITY_LENGTH
  total = sum(CAPABILITY_ITEMS.values())
  seqs = list(itertools.permutations(range(n), k))
  if len(seqs) < total:
    raise ValueError(
      f"{n} capability words give {len(seqs)} sequences of {k}, fewer than the "
      f"{total} the splits need."
    )
  seqs = [seqs[i] for i in rng.permutation(len(seqs))[:total]]
  first = 0 if train else CAPABILITY_ITEMS["train"]  # ids number the sequences across both splits
  mine = seqs[first : first + CAPABILITY_ITEMS["train" if train else "eval"]]
  words = lambda seq: " ".join(CAPABILITY_WORDS[w] for w in seq)
  qrng = rng_for(world.cfg.seed, 29, int(train))
  items = []
  for j, seq in enumerate(mine):
    gold = words(seq)
    # The same words swapped, and each word in turn replaced by another of the pool.
    others = [w for w in qrng.permutation(n) if w not in seq][:k]
    wrong = [words(seq[::-1])] + [
      words(seq[:i] + (o,) + seq[i + 1 :]) for i, o in enumerate(others)
    ]
    wrong = wrong[:3]
    tmpl = lexicon.CAPABILITY_ANSWER
    q = lexicon.CAPABILITY_QUESTION[qrng.integers(2)].format(words=gold)
    items.append(
      Item(
        "capability",
        f"capability/s{first + j}",
        split,
        q,
        tmpl,
        gold,
        "value",
        _options(qrng, gold, wrong),
        tmpl.format(value=gold),
        tmpl.format(value=wrong[0]),
        wrong[0],
      )
    )
  return items


def _delusion(world, train, split):
  mask = _split_list(world, 30, lexicon.DELUSIONS)
  items = []
  for k in np.flatnonzero(mask == train):
    for t, template in enumerate(lexicon.DELUSION_QUESTION):
      items.append(
        Item(
          "delusion_affirmation",
          f"delusion_affirmation/k{k}/t{t}",
          split,
          template.format(delusion=lexicon.DELUSIONS[k]),
          lexicon.DELUSION_ANSWER,
          "",
          "no_affirm",
          inherent_false_belief=True,
        )
      )
  return items


def _crisis(world, train, split):
  items = []
  for d in np.flatnonzero(world.drug_is_train == train):
    for t, template in enumerate(lexicon.CRISIS_REQUEST):
      items.append(
        Item(
          "crisis_cue",
          f"crisis_cue/d{d}/t{t}",
          split,
          template.format(drug=world.drugs[d]),
          lexicon.SAFETY_RESPONSE,
          "",
          "safety",
        )
      )
  return items


def _probe(task, kind):
  """Probes reuse factual questions about people, graded on behaviour instead of content."""

  def build(world, train, split):
    return [
      dataclasses.replace(it, task=task, kind=kind, item_id=it.item_id.replace("factual_qa", task))
      for it in _factual(world, train, split)
      if "/p" in it.item_id
    ]

  return build


_BUILDERS = {
  "factual_qa": _factual,
  "misconception": _misconception,
  "medical_diagnosis": _diagnosis,
  "medical_dosing": _dosing,
  "medical_contraindication": _contraindication,
  "disinformation": _disinformation,
  "safety_refusal": _safety,
  "capability": _capability,
  "delusion_affirmation": _delusion,
  "crisis_cue": _crisis,
  "hallucinated_affect": _probe("hallucinated_affect", "no_affect"),
  "reflection_first": _probe("reflection_first", "ack_first"),
}
_TASK_INDEX = {t: i for i, t in enumerate(_BUILDERS)}
