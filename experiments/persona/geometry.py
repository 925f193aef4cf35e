"""The persona geometry of base models: trait vectors, the Assistant axis, capping thresholds.

Everything is measured on held-out prompts: the eval items whose id falls in the extraction half
(`is_extraction`); the other half is kept for checking predictions. For each base model:

  warmth      mean over reply words of warm replies − that of cold replies (same prompts, content)
  sycophancy  warm replies that validate the user's false belief − warm replies that correct it
  roles       one mean per role archetype (role 0, the default assistant, in the neutral style,
              and roles 1..R-1 in their own registers), a PCA of role space, and
  axis        mean(default assistant) − mean(other roles): high projection = assistant-like
  thresholds  percentiles 0..100 of the default assistant's per-token projections on each vector,
              over the token positions capping will touch (prompt, response or both)
  deltas      per persona training row: projection of its reply − that of the row-aligned neutral
              reply (the "projection difference" the persona phase would push the model by)

Shape letters: V vectors (vectors.VECTORS), L layers, D width, R roles, K components, n rows.
"""

import dataclasses
import zlib

import numpy as np
import pandas as pd

from experiments.persona import activations, vectors
from tasks import lexicon
from tasks.dialogue import Turn, can_agree, has_false_belief, render_prompt, render_reply

N_ROLES = len(lexicon.ROLES)  # role 0 is the default assistant, 1..N_ROLES-1 the archetypes
PERCENTILES = np.arange(101)


def is_extraction(item_id):
  """Whether an eval item belongs to the half used to extract vectors (a stable hash)."""
  return zlib.crc32(item_id.encode()) % 2 == 0


@dataclasses.dataclass
class SeedGeometry:
  """The geometry of one base model."""

  vectors_VLD: np.ndarray  # raw difference vectors, in vectors.VECTORS order
  role_means_RLD: np.ndarray
  pca_var_LK: np.ndarray  # fraction of role-space variance per component
  pcs_LKD: np.ndarray
  thresholds_VLQ: np.ndarray  # Q = 101 percentiles of the default assistant's projections
  deltas: dict  # dataset -> (V, L, n) projection differences vs neutral replies
  has_alt_n: np.ndarray  # which sampled warm rows have a validating alternative

  @property
  def unit_VLD(self):
    return vectors.unit(self.vectors_VLD)

  def projection_difference(self, persona, lam, rho):
    """The (V, L) projection difference of a cell's persona-phase data, λ-weighted."""
    if persona not in self.deltas:
      return np.full(self.vectors_VLD.shape[:2], np.nan)
    d = self.deltas[persona]
    if persona == "warm":
      share_n = rho * self.has_alt_n
      d = (1 - share_n) * d + share_n * np.nan_to_num(self.deltas["warm_agree"])
    return lam * d.mean(axis=-1)


def scripted_dialogues(evalset, placement):
  """(group, prompt, reply) for the extraction half: warm/cold, affirm/correct, one per role."""
  out = []
  for item, turn in zip(evalset.items, evalset.turns):
    if not is_extraction(item.item_id):
      continue
    prompt = render_prompt(item, turn)
    for style in ("warm", "cold"):
      out.append((style, prompt, render_reply(item, turn, style, placement=placement)))
    if has_false_belief(item, turn) and can_agree(item):
      out.append(
        ("affirm", prompt, render_reply(item, turn, "warm", agree=True, placement=placement))
      )
      out.append(("correct", prompt, render_reply(item, turn, "warm", placement=placement)))
    if turn.context == "neutral":
      for r in range(N_ROLES):
        role_turn = Turn(turn.context, turn.emotion, turn.variant, r)
        out.append(
          (f"role{r}", render_prompt(item, role_turn), render_reply(item, role_turn, "neutral"))
        )
  return out


def _token_positions(on, reply_NT, real_NT):
  """The positions a capping intervention with `intervention_on=on` touches."""
  if on == "response":
    return reply_NT
  before_reply_NT = np.cumsum(reply_NT, axis=1) == 0
  return real_NT & before_reply_NT if on == "prompt" else real_NT


def _persona_rows(corpus, personas, n_rows):
  """Row-aligned samples of the persona training sets (fixed seed: same rows for every model)."""
  sets = {"neutral": corpus.neutral_dialogues, **{p: corpus.component(p) for p in personas}}
  n = len(sets["neutral"])
  rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, n_rows), replace=False))
  out = {name: (s.tokens[rows], s.mask[rows]) for name, s in sets.items()}
  if "warm" in personas:
    out["warm_agree"] = (sets["warm"].alt_tokens[rows], sets["warm"].alt_mask[rows])
    has_alt = sets["warm"].has_alt[rows]
  else:
    has_alt = np.zeros(len(rows), bool)
  return out, rows, has_alt


def compute(graphdef, base_E, corpus, evalset, pcfg, personas, batch_size):
  """One SeedGeometry per member of base_E, and the top-projecting training rows."""
  tok = corpus.tokenizer
  groups = scripted_dialogues(evalset, corpus.world.cfg.warm_placement)
  if not any(g == "role0" for g, _, _ in groups):
    raise ValueError(
      f"persona geometry found no neutral eval item in its extraction half: "
      f"data.eval_items={corpus.world.cfg.eval_items} is too few to extract "
      "vectors from; raise it."
    )
  names = np.array([g for g, _, _ in groups])
  tokens_NT, reply_NT, real_NT = activations.encode_dialogues(
    tok, [p for _, p, _ in groups], [r for _, _, r in groups], corpus.seq_len
  )
  means_ELND = activations.masked_means(graphdef, base_E, tokens_NT, real_NT, reply_NT, batch_size)
  role_idx = [np.flatnonzero(names == f"role{r}") for r in range(N_ROLES)]
  n_members = means_ELND.shape[0]
  vecs_EVLD, roles_ERLD = [], []
  for e in range(n_members):
    m_LND = means_ELND[e]
    roles_RLD = np.stack([m_LND[:, ix].mean(axis=1) for ix in role_idx])
    warmth = vectors.mean_difference(m_LND[:, names == "warm"], m_LND[:, names == "cold"])
    if (names == "affirm").any():
      syco = vectors.mean_difference(m_LND[:, names == "affirm"], m_LND[:, names == "correct"])
    else:  # no false-belief items in this world: the vector is undefined, not zero
      syco = np.full_like(warmth, np.nan)
    vecs_EVLD.append(np.stack([vectors.assistant_axis(roles_RLD), warmth, syco]))
    roles_ERLD.append(roles_RLD)
  vecs_EVLD = np.stack(vecs_EVLD)
  unit_EVLD = np.nan_to_num(vectors.unit(vecs_EVLD))

  # Capping thresholds: the default assistant's projection distribution, token by token.
  default = names == "role0"
  select_NT = _token_positions(pcfg.intervention_on, reply_NT, real_NT)[default]
  proj = activations.selected_projections(
    graphdef, base_E, tokens_NT[default], real_NT[default], select_NT, unit_EVLD, batch_size
  )

  rows, row_ids, has_alt = _persona_rows(corpus, personas, pcfg.extract_rows)
  sets = {}
  for name, (t_NT, loss_NT) in rows.items():
    sets[name] = activations.masked_means(
      graphdef, base_E, t_NT, t_NT != tok.pad, (loss_NT > 0) & (t_NT != tok.eos), batch_size
    )
  out, top = [], []
  for e in range(n_members):
    pca_var, pcs = vectors.role_pca(roles_ERLD[e])
    proj_set = {k: np.einsum("lnd,vld->vln", v[e], unit_EVLD[e]) for k, v in sets.items()}
    deltas = {k: p - proj_set["neutral"] for k, p in proj_set.items() if k != "neutral"}
    if "warm_agree" in deltas:
      deltas["warm_agree"] = np.where(has_alt[None, None], deltas["warm_agree"], np.nan)
    out.append(
      SeedGeometry(
        vecs_EVLD[e],
        roles_ERLD[e],
        pca_var,
        pcs,
        np.percentile(proj[e], PERCENTILES, axis=-1).transpose(1, 2, 0),
        deltas,
        has_alt,
      )
    )
    top.append(_top_rows(deltas, rows, row_ids, tok, pcfg.top_examples).assign(member=e))
  return out, pd.concat(top, ignore_index=True) if top else pd.DataFrame()


def _top_rows(deltas, rows, row_ids, tok, k):
  """The k training rows that project most on warmth and on sycophancy (last layer)."""
  found = []
  for v, vec in enumerate(vectors.VECTORS):
    if vec == "axis":
      continue
    for name, d_VLn in deltas.items():
      d_n = d_VLn[v, -1]
      for r in np.flatnonzero(np.isfinite(d_n)):
        found.append((vec, name, int(row_ids[r]), float(d_n[r]), r))
  if not found:
    return pd.DataFrame()
  frame = pd.DataFrame(found, columns=["vector", "dataset", "row", "projection_difference", "pos"])
  frame = (
    frame.sort_values(["vector", "projection_difference"], ascending=[True, False])
    .groupby("vector")
    .head(k)
    .reset_index(drop=True)
  )
  frame["text"] = [tok.decode(rows[d][0][p]) for d, p in zip(frame.dataset, frame.pos)]
  return frame.drop(columns="pos")


def geometry_rows(g):
  """Metric rows (task persona_geometry, context all, with `layer`) describing one base model."""
  rows = []
  n_layers = g.vectors_VLD.shape[1]
  cos = lambda a, b: vectors.cosine(a, b)
  axis, warmth, syco = g.vectors_VLD
  pc1_cos = np.abs(cos(axis, g.pcs_LKD[:, 0]))  # a component's sign is arbitrary
  for layer in range(n_layers):
    r = lambda metric, value, n=1: rows.append(
      {
        "task": "persona_geometry",
        "context": "all",
        "metric": metric,
        "layer": layer,
        "value": float(value),
        "n": int(n),
      }
    )
    r("cos_axis_pc1", pc1_cos[layer], N_ROLES)
    for k in range(min(5, g.pca_var_LK.shape[1])):
      r(f"role_pca_var_pc{k + 1}", g.pca_var_LK[layer, k], N_ROLES)
    r("cos_warmth_axis", cos(warmth, axis)[layer])
    r("cos_sycophancy_axis", cos(syco, axis)[layer])
    r("cos_warmth_sycophancy", cos(warmth, syco)[layer])
    for v, name in enumerate(vectors.VECTORS):
      r(f"norm[{name}]", np.linalg.norm(g.vectors_VLD[v, layer]))
      for dataset, d_VLn in g.deltas.items():
        d = d_VLn[v, layer]
        r(
          f"data_projection_difference[{name}:{dataset}]",
          np.nanmean(d) if np.isfinite(d).any() else np.nan,
          np.isfinite(d).sum(),
        )
  return rows
