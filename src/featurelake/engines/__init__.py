"""Engines that execute read plans: one folder each, of the same shape; none imports another."""
