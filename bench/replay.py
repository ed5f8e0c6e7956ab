"""Replay benchmark: `hub rebuild` next to raw nats-py consumption of the same streams.

    python -m bench.replay --nats-url nats://127.0.0.1:4222 [--live sqlite:///.hub/gateway.db]

Both are measured in one run, on the streams as they are (`bench.refresh` calls it at the
end of its own run):

* **raw**: nats-py alone, one ephemeral pull consumer per stream (HUB_EVENTS, then
  HUB_SNAPSHOTS) with explicit acks, fetching batches of 500 and acking every message: the
  ceiling for any consumer in Python on this machine;
* **rebuild**: the real `hub rebuild` command (a child process) into a fresh SQLite
  database: both streams merged by time, decoded, validated and projected through the
  gateway's own code. Its own throughput line is read (the schema migration is not timed);
  with ``--live`` it also compares the rebuilt model with the live one (invariant 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM

RAW_BATCH = 500
_REBUILD_LINE = re.compile(r"rebuilt (\d+) messages .* in ([\d.]+) s: ([\d,]+) messages/s")


@dataclass(frozen=True)
class RawConsumption:
    messages: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Rebuild:
    messages: int
    seconds: float
    messages_per_second: float
    equal_to_live: bool | None  # None: no live model to compare with


async def raw_consumption(
    nats_url: str, streams: tuple[str, ...] = (EVENTS_STREAM, SNAPSHOTS_STREAM)
) -> RawConsumption:
    """Fetch and ack every message of the streams with nats-py alone, timed end to end."""
    connection = await nats.connect(nats_url, name="bench-raw-consumer")
    js = connection.jetstream()
    messages = 0
    started = time.perf_counter()
    try:
        for stream in streams:
            total = (await js.stream_info(stream)).state.messages
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, inactive_threshold=60, mem_storage=True
            )
            subscription = await js.pull_subscribe("hub.>", stream=stream, config=config)
            try:
                read = 0
                while read < total:
                    try:
                        batch = await subscription.fetch(RAW_BATCH, timeout=2)
                    except nats.errors.TimeoutError:
                        break  # fewer than counted: the stream's limits removed some
                    for message in batch:
                        await message.ack()
                    read += len(batch)
                messages += read
            finally:
                await subscription.unsubscribe()
        await connection.flush()  # every ack has left
    finally:
        await connection.close()
    return RawConsumption(messages, time.perf_counter() - started)


def hub_rebuild(nats_url: str, target_database_url: str, live_database_url: str | None) -> Rebuild:
    """Run `hub rebuild` as an operator would and read its own throughput line."""
    command = [sys.executable, "-m", "hub_cli", "rebuild", "--target", target_database_url]
    if live_database_url is not None:
        command += ["--live", live_database_url]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment |= {"HUB_NATS_URL": nats_url, "HUB_MODE": "test", "HUB_LOG_LEVEL": "WARNING"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900, check=False)
    match = _REBUILD_LINE.search(result.stdout)
    if match is None:
        raise RuntimeError(
            f"hub rebuild said no throughput (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return Rebuild(
        messages=int(match.group(1)),
        seconds=float(match.group(2)),
        messages_per_second=float(match.group(3).replace(",", "")),
        equal_to_live=None if live_database_url is None else result.returncode == 0,
    )


@dataclass(frozen=True)
class ReplayComparison:
    raw: RawConsumption
    rebuild: Rebuild

    def as_json(self) -> dict[str, Any]:
        raw_rate = self.raw.messages_per_second
        return {
            "raw": asdict(self.raw) | {"messages_per_second": round(raw_rate)},
            "rebuild": asdict(self.rebuild),
            "rebuild_share_of_raw": round(self.rebuild.messages_per_second / raw_rate, 3) if raw_rate else None,
        }


def measure(nats_url: str, live_database_url: str | None, workdir: Path) -> ReplayComparison:
    """Raw consumption, then `hub rebuild`, on the same streams; the numbers side by side."""
    raw = asyncio.run(raw_consumption(nats_url))
    rebuilt = hub_rebuild(nats_url, f"sqlite:///{workdir / 'rebuilt-gateway.db'}", live_database_url)
    return ReplayComparison(raw, rebuilt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", default=os.environ.get("HUB_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--live", help="the live gateway database, to compare the rebuilt model with")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hub-bench-replay-") as workdir:
        comparison = measure(arguments.nats_url, arguments.live, Path(workdir))
    print(json.dumps(comparison.as_json(), indent=2))
    return 1 if comparison.rebuild.equal_to_live is False else 0


if __name__ == "__main__":
    sys.exit(main())
