"""Example domain shipped with featurelake: a small retailer (used by the demo and notebooks)."""
