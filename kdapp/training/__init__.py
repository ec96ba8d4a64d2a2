"""Training: the distillation loop, the teachers, feature adapters and data-parallel helpers."""
