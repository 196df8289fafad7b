"""Datasets: cards, official release layouts, generic readers, splits, views, image decoding."""
