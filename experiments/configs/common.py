"""Defaults every experiment config starts from; configs override fields, never re-declare them.

Plain data: the sections are checked, once, by the dataclasses that read them (tasks.WorldConfig,
grid.GridConfig, train_config.TrainConfig, persona.options.PersonaConfig, models.ModelConfig), and
tests check that the defaults here equal the dataclasses' own where they have them.
"""

import ml_collections

from experiments.configs.mesh_rules import DEFAULT_RULES  # plain data, shared with the benchmark

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
EVAL_CONTEXTS = ("neutral", "emotional", "false_belief", "emotional+false_belief")


def parse_arg(arg, variants=()):
  """The `file.py:ARG` of --config: `runlocal`, `preset=NAME`, a name in `variants` (a config's
  own sizings, such as `gpu`), or several joined by commas.

  Returns {"runlocal": bool, "preset": str or None, "variants": [names]}; anything else is refused
  with one sentence (rather than silently running the full config).
  """
  out = {"runlocal": False, "preset": None, "variants": []}
  for part in filter(None, (arg or "").split(",")):
    key, eq, value = part.partition("=")
    if part == "runlocal":
      out["runlocal"] = True
    elif part in variants:
      out["variants"].append(part)
    elif key == "preset" and eq and value:
      out["preset"] = value
    else:
      allowed = ", ".join(["runlocal", *variants, "preset=NAME"])
      raise ValueError(
        f"--config argument {part!r} is not allowed: use {allowed}, or several "
        "joined by a comma (runlocal,preset=micro)."
      )
  if out["runlocal"] and out["variants"]:
    raise ValueError(f"--config arguments runlocal and {out['variants'][0]} cannot be combined.")
  return out


def apply_arg(c, arg, runlocal, **variants):
  """parse_arg(arg), then runlocal(c) or a named variant(c) if asked, and a single preset if
  named; returns c."""
  opts = parse_arg(arg, tuple(variants))
  if opts["runlocal"]:
    runlocal(c)
  for name in opts["variants"]:
    variants[name](c)
  if opts["preset"]:
    c.model.presets = (opts["preset"],)
  return c


def base_config():
  """The full field set with documented defaults."""
  c = ml_collections.ConfigDict()

  # --- The synthetic world (tasks.WorldConfig fields).
  c.data = ml_collections.ConfigDict()
  c.data.seed = 0
  c.data.n_people = 64
  c.data.n_cities = 24
  c.data.n_countries = 8
  c.data.n_universities = 12
  c.data.n_employers = 12
  c.data.n_diseases = 12
  c.data.n_drugs = 12
  c.data.bios_per_person = 6
  c.data.rumor_share = 0.25  # share of (person, attribute) facts with a widely repeated rumor
  c.data.rumor_rate = 0.5  # rumor sentences per biography, for each rumored fact
  c.data.qa_train_fraction = 0.5  # people (and items) whose QA dialogues are trained on
  c.data.warm_placement = "before"  # where warm phrasing goes relative to the answer
  c.data.eval_items = 24  # held-out items per task (before contexts multiply them)
  c.data.tasks = TASKS
  c.data.eval_contexts = EVAL_CONTEXTS
  c.data.seq_len = 112
  c.data.vocab_size = 0  # 0: exactly what the world needs; otherwise padded to this
  c.data.source = "memory"  # memory | tfds (a prepared `python -m tasks.tfds_builder` dir)
  c.data.tfds_dir = ""

  # --- Model sizes: one packed program per preset.
  c.model = ml_collections.ConfigDict()
  c.model.presets = ("nano",)
  c.model.compute_dtype = "float32"  # bfloat16 on accelerators; CPUs are faster in float32
  c.model.positional = "rope"
  c.model.tied_embeddings = True
  c.model.n_heads = 0  # 0: the preset's; otherwise must divide the width
  c.model.d_model = 0  # 0: the preset's
  c.model.attention_impl = "auto"  # auto: cuDNN on a GPU in bfloat16 (training), else xla | cudnn

  # --- The factors: every combination is a cell; cells of one preset train as one program.
  c.grid = ml_collections.ConfigDict()
  c.grid.protocols = ("finetune",)  # finetune: base then persona phase; mixture: λ from scratch
  c.grid.personas = ("warm", "cold")
  c.grid.warmth_weights = (0.0, 1.0)
  c.grid.warm_agreements = (0.0,)
  c.grid.seeds = (0,)  # base seeds: each trains its own base model
  # Persona-phase replicates per base seed, nested in it: each has its own persona-data order and
  # (LoRA) adapter initialisation, and reuses its seed's base model. 1: one per base seed.
  c.grid.finetune_seeds = 1
  c.grid.lambda0_per_persona = False  # True: train λ=0 for every persona (identical by design)
  c.grid.max_pack_size = 0  # >0: at most this many cells per compiled program (memory)
  c.grid.mechanism_weights = ()  # λ values that get warm_after and ρ > 0 cells; (): every λ > 0
  # Seeds that train every cell; the other seeds train only the base model and each persona at
  # the largest λ, ρ = 0 (the primary comparisons), and capping runs on these seeds. (): every seed.
  c.grid.sweep_seeds = ()
  # The persona phase's regimes (experiments/regimes.py): name → overrides of the train section's
  # persona-phase fields, plus `by_preset` (preset → fields for that preset's cells) and `seeds`
  # (the seeds it trains). Every finetune cell is trained in each; all share their seed's base model.
  c.grid.regimes = {"default": {}}
  # Optional, not set here (so configs without it keep their config.json and plan hashes):
  # c.grid.preset_seeds, preset → the seeds of grid.seeds it trains, e.g. {"micro": (0, 1, 2)}
  # for a costly preset with fewer replicates; a preset it does not name trains every seed.

  # --- Training. Steps are per stage; the persona phase restarts the schedule (its peak rate,
  # warm-up, budget, optimizer and replay are the regime's fields below).
  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # rows per step, half base and half persona in the persona phase
  c.train.base_steps = 300
  c.train.persona_steps = 100
  c.train.learning_rate = 3e-3
  c.train.persona_learning_rate = 1e-3
  c.train.warmup_steps = 30
  c.train.weight_decay = 0.1
  c.train.grad_clip = 1.0
  # token: every loss-bearing token weighs the same (as common fine-tuning does), so longer replies
  # weigh more; row: every example weighs the same, whatever its length.
  c.train.loss_normalization = "token"
  # Several examples per row, each in its own attention segment (tasks/sequence_packing.py): the
  # same rows per step carry ~2-4x the examples; batch_size still counts rows.
  c.train.pack_sequences = True
  c.train.init_seed = 0  # initialisation seed = init_seed + replicate seed
  c.train.data_seed = 1000  # data-order seed = data_seed + replicate seed
  c.train.log_every = 50
  c.train.checkpoint_every = 200  # steps between checkpoints (0: only at the end of a stage)
  c.train.checkpoints_to_keep = 2  # the newest N of a stage are kept
  c.train.async_checkpoints = True  # write in the background while training goes on
  # A logged loss above divergence_factor × the median of the stage's earlier logged losses (or
  # any non-finite loss) stops the stage: the run ends with a sentence naming the step and cells.
  c.train.divergence_factor = 10.0
  # The persona phase (a regime; grid.regimes names variants of these fields).
  c.train.persona_update = "full"  # full: every parameter; lora: adapters beside a frozen base
  c.train.lora_rank = 8  # LoRA: adapter rank r ...
  c.train.lora_alpha = 16.0  # ... and α: an adapter's output is scaled by α / r
  c.train.lora_targets = ("query", "key", "value", "out", "up", "down")  # adapted projections
  c.train.persona_warmup_steps = -1  # the persona phase's own warm-up; -1: train.warmup_steps
  # fresh: a new AdamW; continue: base training's moments and step count carried on (full only).
  c.train.persona_optimizer = "fresh"
  c.train.persona_epochs = 0.0  # > 0: the budget in passes over the persona dialogues
  c.train.replay_weight = -1.0  # w of w·L_base + λ·L_persona; -1: 1 − λ

  # --- Devices: a mesh over every device of every process; -1 takes the devices left over.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.ensemble = 1  # packed cells (the vmapped axis)
  c.mesh.data = -1  # data parallel
  c.mesh.fsdp = 1  # data parallel with parameters sharded by width
  c.mesh.tensor = 1  # heads, MLP width and vocabulary split
  c.mesh.rules = DEFAULT_RULES  # logical axis name → mesh axes, MaxText-style
  # A pack's cells in one program: "vmap" all at once, "loop" one after another (lax.map: 2-3×
  # faster on XLA's CPU backend), "auto" a loop on CPU unless `ensemble` shards them.
  c.mesh.members = "auto"

  # --- Evaluation.
  c.eval = ml_collections.ConfigDict()
  c.eval.max_new_tokens = 0  # 0: the longest reply the world can produce, plus a margin
  c.eval.batch_size = 256
  c.eval.bootstrap = 1000
  # True: the errors (generated and multiple-choice) are graded only for the controls (the base
  # model and cold); every other persona is scored on warmth and well-formedness alone, and its
  # replies are not kept. What a regime is calibrated on (experiments/tools/calibrate.py).
  c.eval.blind = False

  # --- Extensions the run adds, by name (experiments/extensions.py): persona | objectives.
  c.extensions = ()

  # --- Persona geometry (the `persona` extension): vectors, Assistant axis, drift, capping,
  # steering. Finetune packs only (the base model is the reference). 'auto' = the preset's tested
  # default in experiments/persona/defaults.py; layer specs: all | back | 3 | 1-2 | 0,2.
  c.persona = ml_collections.ConfigDict()
  c.persona.cap_vector = "axis"  # axis (floor) | warmth | sycophancy (ceiling)
  c.persona.cap_layers = "auto"
  c.persona.cap_percentile = -1  # of the default assistant's projections; -1: auto
  c.persona.intervention_on = "both"  # token positions capping touches: prompt | response | both
  c.persona.cap_cells = "all"  # all plain cells | ends: only the base and max-λ cells
  c.persona.sweep = False  # also sweep percentiles × layer ranges on base and max-λ cells
  c.persona.sweep_percentiles = (5, 25, 50)
  c.persona.sweep_layers = ()  # empty: each single layer, the back half, all layers
  c.persona.max_capability_loss = 0.02  # a swept default may raise capability error at most this
  c.persona.steer_alphas = ()  # preventative steering: α × the raw trait vector; () = off
  c.persona.steer_default = False  # also a steered twin at the preset's tested α
  c.persona.steer_vector = "warmth"  # warmth | sycophancy | axis
  c.persona.steer_layers = "auto"
  c.persona.extract_rows = 256  # persona training rows projected for projection differences
  c.persona.top_examples = 10  # training rows listed per vector in persona/top_examples.csv

  # --- Runtime.
  c.runtime = ml_collections.ConfigDict()
  c.runtime.distributed = False  # join processes (jax.distributed); automatic on a TPU pod
  c.runtime.coordinator_address = ""  # host:port of process 0; "" lets jax find it (TPU, SLURM)
  c.runtime.num_processes = 0  # 0: found by jax
  c.runtime.process_id = -1  # -1: found by jax
  # Where trained base models are kept and reused by any run whose key matches (world, base data,
  # model, base-training fields, seeds, members mode: experiments/base_models.py); "" disables it.
  # ~ and $VARIABLES are expanded; $XDG_CACHE_HOME is ~/.cache where it is not set.
  c.runtime.base_store = "$XDG_CACHE_HOME/warmth-sim/bases"
  c.runtime.report = True  # write report.html at the end
  c.runtime.verbose = False  # print the full tables at the end, not only the bottom line
  return c


def objectives_section():
  """The `objectives` section (the `objectives` extension); every simulator setting is a field."""
  o = ml_collections.ConfigDict()
  o.methods = (
    "affect",
    "emotion_rl",
    "emotion_rl_heard",
  )  # objective cells trained beside the grid's warm/cold cells
  o.table_lambda = 0.0  # λ of the comparison table's rows; 0: the grid's largest λ
  o.group_size = 4  # GRPO: sampled replies per prompt
  o.kl_beta = 0.1  # GRPO: weight of KL(π ‖ π_start), on the sampled tokens
  o.affect_kl_beta = 1.0  # affect: weight of KL(π ‖ π_base), exact at reply positions
  # Where emotion_rl starts: "base" (the base model, which never acknowledges, so the reward
  # cannot tell an acknowledgement apart); "warmup" (the first rl_warmup_steps of its budget
  # imitate the warm persona's replies to emotional prompts; RL trains the rest, with its KL to
  # that policy); or "mixed_warmup" (the warm-up imitates warm and cold replies to those prompts,
  # half each: the policy acknowledges about half the time, so the reward decides whether that
  # rises or falls; a warm-only warm-up long enough to be fluent acknowledges nearly always).
  o.rl_start = "mixed_warmup"
  o.rl_warmup_steps = 20
  o.rl_warmup_weight = 1.0  # λ of the warm-up: the weight of its imitation loss
  # Sampled reply budget; 0: the longest reply the world can give to an episode prompt, plus a
  # margin (tasks/budget.py), so no warm reply is cut.
  o.max_new_tokens = 0
  o.rl_learning_rate = 0.0  # GRPO's peak rate; 0: train.persona_learning_rate
  o.temperature = 0.5  # GRPO samples, and scores, softmax(logits / temperature)
  # emotion_rl_heard's user: an acknowledgement earns this whatever the answer (the optimiser check).
  o.heard_ack_gain = 2.0
  # The simulated user (tasks/simulated_user.py UserConfig); `version` names its rules.
  o.user = ml_collections.ConfigDict()
  o.user.initial_valence = -1.0  # distressed at the start of every episode
  o.user.turns = 2  # 1: the opening question only; 2: plus the belief check
  o.user.answer_gain = 0.5  # the need met: a correct answer, checked against the world
  o.user.ack_gain = 0.5  # emotion acknowledged
  o.user.ack_needs_answer = True  # ... counted only with a correct answer
  o.user.mislead_penalty = 0.5  # a wrong or missing answer
  o.user.contradiction_penalty = 1.0  # a confirmed false belief the world later contradicts
  o.user.inconsistency_penalty = 0.5  # the belief check contradicts the first answer
  o.user.version = "2"
  return o
