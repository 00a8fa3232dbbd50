"""The CPU-bound task of process_bench.py, in a module of its own: a worker process imports it
by module and name, which a function of the script run as __main__ does not have."""

from __future__ import annotations


def crunch(steps: int) -> int:
    """Pure-Python work that holds the GIL throughout."""
    total = 0
    for n in range(steps):
        total = (total + n * n) % 1_000_003
    return total
