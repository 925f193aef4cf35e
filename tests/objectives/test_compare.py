"""objectives/compare.py: each objective compared with warm and the base model, per regime."""

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import plots
from experiments.objectives import (
  compare,
  report_section,
)


def _items(seeds=(0, 1, 2)):
  """Every method at λ = 0.5 on 3 seeds × 2 tasks × 2 contexts × 6 items; warm gets item k = 0
  and 1 of factual_qa wrong on every seed, affect item 0 only, everything else is right."""
  rows = []
  spec = [
    ("none", "none", 0.0, 0.0),
    ("cold", "none", 0.5, 0.0),
    ("warm", "none", 0.5, 1.0),
    ("warm", "cap@p25:L1", 0.5, 0.5),
    ("affect", "none", 0.5, 1.0),
  ]
  for seed in seeds:
    for persona, iv, lam, warmth in spec:
      for task in ("factual_qa", "capability", "safety_refusal"):
        for context in ("neutral", "false_belief"):
          for k in range(6):
            wrong = {"warm": 2, "affect": 1}.get(persona, 0) if iv == "none" else 0
            err = int(task == "factual_qa" and k < wrong)
            rows.append(
              dict(
                run=f"{persona}{iv}{seed}",
                preset="nano",
                n_params=10,
                protocol="finetune",
                regime="default",
                persona=persona,
                warmth_weight=lam,
                warm_agreement=0.0,
                seed=seed,
                intervention=iv,
                task=task,
                context=context,
                item_id=f"{task}/p{k}/x",
                error=err,
                mc_error=0.0,
                warmth=warmth,
                affirms=err,
                acknowledges=0,
                well_formed=1,
              )
            )
  return pd.DataFrame(rows)


def test_comparison_table_pairs_each_method_with_warm_and_base(tmp_path):
  table = compare.comparison_table(_items(), 0.5, n_boot=200)
  level = table[(table.vs == "") & (table.outcome == "error_rate")].set_index("method")
  # factual_qa is the only reliability task here: warm misses 2 of 6 items in both contexts.
  assert level.estimate["warm"] == pytest.approx(2 / 6)
  assert level.estimate["affect"] == pytest.approx(1 / 6)
  assert level.estimate["base"] == 0.0 and level.n_seeds["warm"] == 3
  vs_warm = table[(table.vs == "warm") & (table.outcome == "error_rate")].set_index("method")
  assert vs_warm.estimate["affect"] == pytest.approx(-1 / 6)
  assert vs_warm.ci_low["affect"] <= -1 / 6 <= vs_warm.ci_high["affect"]
  assert "warm" not in vs_warm.index  # never paired with itself
  vs_base = table[(table.vs == "base") & (table.outcome == "error_rate")].set_index("method")
  assert vs_base.estimate["warm"] == pytest.approx(2 / 6)
  assert vs_base.estimate["warm+capping"] == 0.0  # capping fixed both items here
  assert "ack_rate" not in set(table.outcome)  # no emotional context here: no row, not a NaN
  per_context = table[table.outcome == "error_rate[false_belief]"]
  assert set(per_context.method) == {"base", "cold", "warm", "affect", "warm+capping"}
  rows = compare.comparison_rows(table, 0.5)
  assert (rows.task == compare.COMPARISON_TASK).all()
  assert {"cmp:error_rate", "cmp:error_rate:vs_warm", "cmp:error_rate:vs_base"} <= set(rows.metric)
  back = compare.from_rows(rows)
  assert np.allclose(back.estimate, table.estimate, equal_nan=True) and (back.vs == table.vs).all()
  wide = compare.wide(back)
  assert list(wide.method) == ["base", "cold", "warm", "affect", "warm+capping"]
  assert wide.set_index("method").error_rate["warm"].startswith("33.3 [")
  doc, summary, figs = [], [], []
  drawn = {}
  save = plots.save
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(plots, "save", lambda fig, *a: drawn.setdefault("fig", fig) and save(fig, *a))
    report_section.add(rows, doc, summary, figs, str(tmp_path))
  assert doc and summary and figs[0].png and not figs[0].skipped
  assert any(kind == "h3" and "Paired against warm" in text for kind, text in doc)
  ax = drawn["fig"].axes[0]
  assert ax.get_xlabel().startswith("warmth score") and "error" in ax.get_ylabel()
  assert "_" not in ax.get_xlabel() + ax.get_ylabel()
  # One point per method, each with interval bars (errorbar containers), labelled in the legend.
  assert len(ax.containers) == 5 and {t.get_text() for t in ax.get_legend().get_texts()} == {
    "base",
    "cold",
    "warm",
    "affect",
    "warm+capping",
  }


def test_each_regime_gets_its_own_comparison_beside_the_shared_base_models():
  # `forgetting`: the same cells, but warm misses every factual_qa item; the base models (regime
  # none) serve both regimes and must be the reference of each.
  gentle = _items()
  gentle = gentle.assign(regime=np.where(gentle.persona == "none", "none", "chosen"))
  harsh = gentle[gentle.persona != "none"].assign(regime="forgetting")
  harsh.loc[
    (harsh.persona == "warm") & (harsh.intervention == "none") & (harsh.task == "factual_qa"),
    "error",
  ] = 1
  table = compare.comparison_table(pd.concat([gentle, harsh], ignore_index=True), 0.5, n_boot=200)
  warm = table[(table.method == "warm") & (table.outcome == "error_rate")]
  level = warm[warm.vs == ""].set_index("regime").estimate
  assert level["chosen"] == pytest.approx(2 / 6) and level["forgetting"] == pytest.approx(1.0)
  vs_base = warm[warm.vs == "base"].set_index("regime").estimate
  assert vs_base["chosen"] == pytest.approx(2 / 6) and vs_base["forgetting"] == pytest.approx(1.0)
  rows = compare.comparison_rows(table, 0.5)
  assert {"cmp-nano@chosen-warm", "cmp-nano@forgetting-warm"} <= set(rows.run)
  back = compare.from_rows(rows)
  assert set(back.regime) == {"chosen", "forgetting"}
  assert "regime" in compare.wide(table).columns
