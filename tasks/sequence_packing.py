"""Sequence packing: several examples per training row, each in its own segment.

A packed row holds whole examples back to back. Every example keeps its own slot: segment id
k = 1, 2, ... on its tokens (0 on the row's unused tail), positions restarting at 0, so the model
(attention confined to a segment) sees exactly what it would see in a row of its own, and the loss
mask still covers only that example's reply tokens.

Rows that must stay aligned across variants (the persona sets: row r of warm, cold and
length_matched is the same prompt in another style, and warm rows carry a validating alternative)
are packed once, on each example's longest variant: the slots, and so the segments and positions,
are the same in every style, and a variant shorter than its slot leaves pad tokens (no loss, never
attended to by a real token) at the slot's end. ρ then picks the alternative per example, not per
row.

The packing of an epoch is a pure function of its example order and the lengths, so the rows a
step reads stay a pure function of (seed, step).
"""

import numpy as np

OPEN_ROWS = 8  # rows still accepting examples: first fit over a short window keeps rows full


def pack_order(lengths, order, seq_len, open_rows=OPEN_ROWS):
  """Rows of example indices: each example, in `order`, goes to the first open row it fits.

  A row closes once `open_rows` newer rows have been opened, so examples stay near their place in
  the order (an epoch's shuffle is kept, and no row waits for the end of the epoch).
  """
  rows, room, first_open = [], [], 0
  for i in order:
    n = int(lengths[i])
    if n > seq_len:
      raise ValueError(f"an example of {n} tokens does not fit data.seq_len={seq_len}.")
    for r in range(first_open, len(rows)):
      if room[r] >= n:
        rows[r].append(int(i))
        room[r] -= n
        break
    else:
      rows.append([int(i)])
      room.append(seq_len - n)
      first_open = max(first_open, len(rows) - open_rows)
  return rows


def layout(rows, lengths, seq_len):
  """(source_BT, segment_ids_BT, positions_BT) of packed rows.

  source_BT[b, t] = (example, offset) flattened as example * seq_len + offset, -1 where unused:
  the index into an [N, seq_len] token array that fills that slot.
  """
  b = len(rows)
  source = np.full((b, seq_len), -1, np.int64)
  segment = np.zeros((b, seq_len), np.int32)
  positions = np.zeros((b, seq_len), np.int32)
  for r, row in enumerate(rows):
    t = 0
    for k, i in enumerate(row):
      n = int(lengths[i])
      source[r, t : t + n] = i * seq_len + np.arange(n)
      segment[r, t : t + n] = k + 1
      positions[r, t : t + n] = np.arange(n)
      t += n
  return source, segment, positions


def gather(array_NT, source_BT, fill=0):
  """array_NT's values at the packed slots (flattened indices from `layout`), `fill` elsewhere."""
  flat = array_NT.reshape(-1)
  return np.where(source_BT >= 0, flat[np.maximum(source_BT, 0)], fill).astype(array_NT.dtype)


def per_segment(values_BS, segment_BT):
  """values_BS[b, k-1] broadcast over the tokens of segment k of row b (0 on the unused tail)."""
  k = np.maximum(segment_BT - 1, 0)
  return np.where(segment_BT > 0, np.take_along_axis(values_BS, k, axis=1), 0)


def fill_rate(rows, lengths, seq_len):
  """Share of token slots holding an example's tokens."""
  used = sum(int(lengths[i]) for row in rows for i in row)
  return used / max(1, len(rows) * seq_len)
