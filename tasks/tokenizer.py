"""A closed word-level vocabulary: one token per word of the world, digits spelled out."""

import numpy as np

from tasks.dialogue import SPECIAL
from tasks.world import World, lexicon_words

DIGITS = tuple(str(d) for d in range(10))


class Tokenizer:
  """Maps space-separated words to ids and back. Unknown words are a bug, so they raise."""

  def __init__(self, words, vocab_size=0):
    seen, vocab = set(), []
    for w in list(SPECIAL) + list(DIGITS) + list(words):
      if w not in seen:
        seen.add(w)
        vocab.append(w)
    if vocab_size and vocab_size < len(vocab):
      raise ValueError(
        f"data.vocab_size={vocab_size} is too small: this world needs at least "
        f"{len(vocab)} tokens (use 0 for exactly that)."
      )
    self.words = tuple(vocab)
    self.size = vocab_size or len(vocab)
    self._ids = {w: i for i, w in enumerate(vocab)}
    self.pad, self.bos, self.eos = (self._ids[t] for t in ("<pad>", "<bos>", "<eos>"))
    self.asst = self._ids["<asst>"]

  @classmethod
  def for_world(cls, world: World):
    """The vocabulary is a function of the world config alone (lexicon + generated names)."""
    return cls(list(lexicon_words()) + world.words(), world.cfg.vocab_size)

  def encode(self, text):
    try:
      return [self._ids[w] for w in text.split()]
    except KeyError as e:
      raise ValueError(f"word {e.args[0]!r} is not in the world's vocabulary") from None

  def decode(self, ids, stop_at_eos=True):
    out = []
    for i in ids:
      i = int(i)
      if stop_at_eos and i == self.eos:
        break
      if i != self.pad:
        out.append(self.words[i])
    return " ".join(out)

  def encode_examples(self, prompts, targets, seq_len):
    """Rows `<bos> prompt target <eos>` padded to seq_len, with the loss mask on target + eos."""
    ids, bos, eos = self._ids, self.bos, self.eos
    try:
      rows = [
        ([bos] + [ids[w] for w in p.split()], [ids[w] for w in t.split()] + [eos])
        for p, t in zip(prompts, targets)
      ]
    except KeyError as e:
      raise ValueError(f"word {e.args[0]!r} is not in the world's vocabulary") from None
    lengths = [len(p) + len(t) for p, t in rows]
    if lengths and max(lengths) > seq_len:
      r = int(np.argmax(lengths))
      raise ValueError(
        f"data.seq_len={seq_len} is too short: the longest example needs "
        f"{lengths[r]} tokens, so set it to at least {lengths[r]} "
        f"({(prompts[r] + ' ' + targets[r])[:60]!r}...)."
      )
    tokens = np.full((len(rows), seq_len), self.pad, np.int32)
    mask = np.zeros((len(rows), seq_len), np.uint8)
    for r, ((p, t), length) in enumerate(zip(rows, lengths)):
      tokens[r, :length] = p + t
      mask[r, len(p) : length] = 1
    return tokens, mask
