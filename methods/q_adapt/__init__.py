"""q-adapt (seed 002): LoRA instruction tuning, then an instruction-adaptive visual prompt."""
from .method import QAdapt

__all__ = ["QAdapt"]
