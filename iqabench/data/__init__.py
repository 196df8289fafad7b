"""Datasets: cards, official release layouts, splits, image decoding, the embedded set."""
