"""Seeded, model-based invariant checker: random operation sequences against a real server."""
