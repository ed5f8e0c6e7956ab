"""FastStream's span names and message metrics name a subject's pattern, never its ids."""

from __future__ import annotations

import pytest

from hub_common.telemetry_names import subject_pattern


@pytest.mark.parametrize(
    ("subject", "pattern"),
    [
        (
            "hub.b0e5c4a1-7e57-4b3e-9f00-000000000001.company.1CFC6B03-2165-5af1-9a1e-0452550cda4e.snapshot",
            "hub.*.company.*.snapshot",
        ),
        ("hub.b0e5c4a1-7e57-4b3e-9f00-000000000001.refresh.requested", "hub.*.refresh.requested"),
        ("cmd.registry.refresh.request", "cmd.registry.refresh.request"),
        # Only whole tokens: an id inside a longer token is no subject id.
        ("x.b0e5c4a1-7e57-4b3e-9f00-000000000001z.y", "x.b0e5c4a1-7e57-4b3e-9f00-000000000001z.y"),
        ("b0e5c4a1-7e57-4b3e-9f00-000000000001", "*"),
    ],
)
def test_ids_in_a_subject_are_named_by_a_star(subject: str, pattern: str) -> None:
    assert subject_pattern(subject) == pattern
