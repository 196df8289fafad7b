"""mPLUG-Owl2 written for current torch/transformers: model, checkpoint loading and the `owl2` backend."""
