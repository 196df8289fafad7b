"""The MLLM scoring library: how answer-token logits become quality scores (formulas), shared by
every method that scores with an MLLM and by the engine's re-scoring of stored logits."""
