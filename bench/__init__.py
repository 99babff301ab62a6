"""Benchmarks that print figures and ratios against a baseline measured in the same run.

``python -m bench`` runs them all (``--only NAME``, ``--quick``); see docs/performance.md.
"""
