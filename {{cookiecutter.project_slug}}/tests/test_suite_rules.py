"""The service's own tests keep taskflow's rule: behaviour through public interfaces."""

from __future__ import annotations

from pathlib import Path

from .taskflow.test_suite_rules import private_reads


def test_no_service_test_reads_a_private_attribute() -> None:
    # tests/taskflow/ checks its own files.
    found = private_reads(sorted(Path(__file__).parent.glob("*.py")))
    assert not found, "tests must prove behaviour through public interfaces:\n" + "\n".join(found)
