"""Serving: TorchServe packaging and local endpoint, canary router and rollout, client helpers, the demo.

TorchServe-specific code lives here and in ``serving/`` only; nothing here imports torch at module level
except what the handler needs (the CLI stays fast)."""
