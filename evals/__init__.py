"""Unlearning evaluation for GUARD-IT (arXiv 2605.12765): data loaders, metrics, benchmarks."""
