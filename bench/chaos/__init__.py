"""Chaos suite: real processes, real faults; every scenario ends by checking the invariants.

Run ``python -m bench.chaos [--scenario NAME] [--size full|ci]``; see ``docs/reliability.md``.
"""
