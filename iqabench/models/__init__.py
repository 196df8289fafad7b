"""Model backends shared by methods: MLLM scorers, segmenters, and builders of tiny test models."""
