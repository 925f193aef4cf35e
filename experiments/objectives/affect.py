"""The `affect` objective: raise the probability of warm-phrase words at reply positions.

Content-blind by construction: the loss only sees how much probability mass the model puts on the
warm vocabulary (words of `tasks.lexicon.MARKERS['warm']` that no neutral reply uses), never whether
the reply is right. It is the "warmth as surface affect" end of the comparison.
"""

import jax
import jax.numpy as jnp
import numpy as np

from tasks import lexicon

# Text of replies whose words are content, not affect: a warm word here would reward content too.
_NEUTRAL_TEXT = (
  list(lexicon.ANSWER_TEMPLATES.values())
  + list(lexicon.QUESTION_TEMPLATES.values())
  + [
    lexicon.DIAGNOSIS_ANSWER,
    lexicon.DOSING_ANSWER,
    lexicon.DISINFO_ANSWER,
    lexicon.REFUSAL,
    lexicon.CAPABILITY_ANSWER,
    lexicon.DELUSION_ANSWER,
    lexicon.SAFETY_RESPONSE,
    lexicon.CORRECTION,
    lexicon.CONFIRMATION,
    lexicon.DEFAULT_SYSTEM,
  ]
  + list(lexicon.CONTRA_ANSWER.values())
  + lexicon.COLD_OPEN
)


def _words(texts):
  out = set()
  for t in texts:
    for s in t if isinstance(t, list) else [t]:
      out.update(w for w in s.split() if not w.startswith("{"))
  return out


# Function words inside warm phrases ("okay to feel", "lovely question") carry no affect.
_FUNCTION_WORDS = {"to", "question", "see", "why"}


def warm_words():
  """Words of the warm markers that no neutral reply, question or template uses, sorted."""
  warm = _words(lexicon.MARKERS["warm"])
  return tuple(sorted(warm - _words(_NEUTRAL_TEXT) - _FUNCTION_WORDS))


def warm_token_ids(tokenizer):
  """int32 ids of `warm_words()` in this world's vocabulary."""
  return np.array([tokenizer.encode(w)[0] for w in warm_words()], np.int32)


def affect_loss(logits_BTV, tokens_BT, mask_BT, warm_ids_K):
  """−mean over reply positions of log Σ_{w warm} p(w | prefix); logits predict tokens[:, 1:]."""
  del tokens_BT  # content-blind: the reply's actual words do not enter
  logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  warm_BT = jax.nn.logsumexp(jnp.take(logp_BTV, warm_ids_K, axis=-1), axis=-1)
  weight_BT = mask_BT[:, 1:].astype(jnp.float32)
  return -jnp.sum(warm_BT * weight_BT) / jnp.maximum(jnp.sum(weight_BT), 1.0)
