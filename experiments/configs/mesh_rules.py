"""The default logical-axis rules of `config.mesh.rules`: logical dimension name → mesh axes.

Plain data (no imports), so the configs and the GPU benchmark share it without ml_collections.
"""

# Data parallel over (data, fsdp); parameters sharded over fsdp by width and over tensor by
# heads / MLP width / vocabulary; packed cells over ensemble. The residual stream stays whole.
DEFAULT_RULES = (
  ("ensemble", "ensemble"),
  ("batch", ("data", "fsdp")),
  ("vocab", "tensor"),
  ("embed", "fsdp"),
  ("heads", "tensor"),
  ("mlp", "tensor"),
  ("kv", None),
  ("length", None),
  ("act_embed", None),
  ("act_heads", "tensor"),
  ("act_mlp", "tensor"),
  ("act_vocab", "tensor"),
)
