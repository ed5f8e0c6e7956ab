"""Settings that would make a deployment unsafe are refused at start, naming the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hub_common.settings import HubSettings
from hub_fetcher.settings import FetcherSettings
from hub_registry.settings import RegistrySettings


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_odd_replica_counts_up_to_five_are_accepted(replicas: int) -> None:
    assert HubSettings(stream_replicas=replicas).stream_replicas == replicas


@pytest.mark.parametrize(
    ("replicas", "reason"), [(2, "use 1, 3 or 5"), (4, "use 1, 3 or 5"), (0, "greater"), (7, "less")]
)
def test_other_replica_counts_are_refused(replicas: int, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        HubSettings(stream_replicas=replicas)
    assert "stream_replicas" in str(refused.value)
    assert reason in str(refused.value)


def test_the_replica_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_STREAM_REPLICAS", "3")
    assert HubSettings().stream_replicas == 3
    monkeypatch.setenv("HUB_STREAM_REPLICAS", "2")
    with pytest.raises(ValidationError):
        HubSettings()


@pytest.mark.parametrize(("seconds", "accepted"), [(1, True), (60, True), (61, False), (3600, False)])
def test_the_schedule_is_checked_at_least_every_minute(seconds: float, accepted: bool) -> None:
    # Schedules go down to 15 minutes: an hourly check made them hourly.
    if accepted:
        assert RegistrySettings(schedule_check_seconds=seconds).schedule_check_seconds == seconds
    else:
        with pytest.raises(ValidationError, match="schedule_check_seconds"):
            RegistrySettings(schedule_check_seconds=seconds)


@pytest.mark.parametrize(
    "setting", ["audit_max_age_seconds", "snapshots_max_age_seconds", "dead_letters_max_age_seconds"]
)
@pytest.mark.parametrize(("seconds", "accepted"), [(0, True), (1, False), (119, False), (120, True), (86_400, True)])
def test_a_stream_keeps_messages_forever_or_past_its_duplicate_window(
    setting: str, seconds: float, accepted: bool
) -> None:
    # nats-server refuses a max age shorter than the duplicate window, with no sentence of its own.
    if accepted:
        assert getattr(HubSettings.model_validate({setting: seconds}), setting) == seconds
    else:
        with pytest.raises(ValidationError, match=f"{setting}[\\s\\S]*at least 120 s"):
            HubSettings.model_validate({setting: seconds})


@pytest.mark.parametrize(("hours", "accepted"), [(1, False), (44, False), (45, True), (48, True), (72, True)])
def test_subscriptions_are_renewed_before_the_longest_gap_between_two_reads(hours: float, accepted: bool) -> None:
    # The registry reads a client within 40 hours (its upkeep): a subscription renewed only
    # in its last hours would lapse before the next read.
    if accepted:
        assert FetcherSettings(notification_renew_before_seconds=hours * 3600).notification_renew_before_seconds
    else:
        with pytest.raises(ValidationError, match="notification_renew_before_seconds"):
            FetcherSettings(notification_renew_before_seconds=hours * 3600)
