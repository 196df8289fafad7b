"""mPLUG-Owl3 written for current torch/transformers: model, processor, checkpoint loading and the `owl3` backend."""
