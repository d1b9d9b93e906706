"""Helpers for driving a real server from tests and benchmarks (not used by the server itself)."""
