"""Offline stores: Gold Delta tables, virtual features, the hybrid router, point-in-time joins."""
