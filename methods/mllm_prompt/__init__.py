"""Seed 001's MLLM prompting systems (standard, chain-of-thought, in-context; single, full-reference
and double stimulus) as options of one method; see method.py."""
from .method import MllmPrompt, MllmPromptFR

__all__ = ["MllmPrompt", "MllmPromptFR"]
