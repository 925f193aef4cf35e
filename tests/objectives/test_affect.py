"""objectives/affect.py: the affect objective's warm words and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.objectives import (
  affect,
)
from tasks import lexicon


def test_warm_words_are_affect_not_content():
  words = affect.warm_words()
  assert {"sorry", "glad", "hope"} <= set(words)
  content = " ".join(list(lexicon.ANSWER_TEMPLATES.values()) + [lexicon.REFUSAL]).split()
  assert not set(words) & set(content)


def test_affect_loss_is_warm_mass_and_blind_to_content():
  logits = jnp.log(jnp.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
  mask = jnp.array([[0, 1, 1]])
  warm = jnp.array([1, 2])
  expected = -(np.log(0.5) + np.log(0.9)) / 2
  assert float(affect.affect_loss(logits, jnp.array([[0, 1, 2]]), mask, warm)) == pytest.approx(
    expected, rel=1e-5
  )
  other = jnp.array([[0, 0, 0]])  # different reply words, same loss
  assert float(affect.affect_loss(logits, other, mask, warm)) == pytest.approx(expected, rel=1e-5)
  # Its gradient raises the warm logits.
  g = jax.grad(lambda l: affect.affect_loss(l, other, mask, warm))(logits)
  assert float(g[0, 0, 1]) < 0 and float(g[0, 0, 0]) > 0
