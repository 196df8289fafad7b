"""The served-model backend: OpenAI-compatible servers (vLLM, SGLang, API models), see backend.py."""
