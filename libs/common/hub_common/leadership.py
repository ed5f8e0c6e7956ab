"""One replica of a role at a time does its singleton duties (outbox relay, schedules).

Every replica of the registry (or of invitations) serves commands and consumes events, but
only one may relay the outbox, or the same events would leave twice and out of order, and
only one may run a schedule, or every client would be refreshed once per replica. That
replica holds the role's lease: a key in the ``HUB_LEASES`` bucket, created only if absent
and renewed with compare-and-set every third of the lease. The bucket's TTL is the lease:
when its holder dies, the key expires and another replica creates it within a third of a
lease more.

A holder that cannot renew (a broker it cannot reach, a stalled process) stops its duties
two thirds of a lease after its last renewal began, a third of a lease before anyone else
can take over, so two holders never run at once while clocks tick at the same rate. A
publish already in flight when the duties stop may still land; event ids make that
harmless (JetStream drops the duplicate, every consumer ignores it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hub_common import kv, metrics
from hub_common.logging import get_logger
from hub_common.outbox import OutboxRelay
from hub_common.streams import LEASES_BUCKET
from hub_common.tasks import cancel_and_wait

logger = get_logger(__name__)

Duty = Callable[[], Coroutine[Any, Any, None]]
# After a duty fails outright, the lease is given up and asked for again after this pause.
_PAUSE_AFTER_FAILED_DUTY_SECONDS = 1.0


def holder_name(service_name: str) -> str:
    """Who holds a lease, as an operator reading the bucket wants to see it."""
    return f"{service_name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def current_holder(js: JetStreamContext, role: str) -> str | None:
    """The replica that holds ``role``'s lease now, if any."""
    bucket = await js.key_value(LEASES_BUCKET)
    try:
        entry = await bucket.get(role)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    return entry.value.decode() if entry.value else None


class Leadership:
    """Runs ``duty`` while this process holds ``role``'s lease, and only then."""

    def __init__(self, js: JetStreamContext, role: str, *, holder: str, lease_seconds: float) -> None:
        self._js = js
        self._role = role
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._renew_every = lease_seconds / 3
        self._revision: int | None = None

    @property
    def is_leader(self) -> bool:
        return self._revision is not None

    def _held(self, revision: int | None) -> None:
        self._revision = revision
        metrics.lease_held.labels(role=self._role).set(1 if revision is not None else 0)

    async def run(self, duty: Duty) -> None:
        """Take the lease whenever it is free, do ``duty`` while it is held; until cancelled."""
        bucket = await self._js.key_value(LEASES_BUCKET)
        self._held(None)
        while True:
            await self._take(bucket)
            logger.info("lease taken", role=self._role, holder=self._holder)
            doing = asyncio.create_task(duty(), name=f"{self._role}-duty")
            try:
                lost_because = await self._keep(bucket, doing)
            finally:
                try:
                    await cancel_and_wait(doing)
                finally:
                    # Also when this stop is cancelled again while the duty ends: the other
                    # replicas take over at once, not once the lease expires.
                    await self._release(bucket)
            logger.warning("lease given up", role=self._role, holder=self._holder, reason=lost_because)
            await asyncio.sleep(_PAUSE_AFTER_FAILED_DUTY_SECONDS)

    async def _take(self, bucket: KeyValue) -> None:
        while True:
            try:
                taken = await asyncio.wait_for(
                    kv.create(bucket, self._role, self._holder.encode()), timeout=self._renew_every
                )
                if taken is not None:
                    self._held(taken)
                    return
                # Held by another replica, which renews it while it lives.
            except (TimeoutError, nats.errors.Error) as error:
                logger.info("lease not reachable; asking again", role=self._role, error=repr(error)[:200])
            await asyncio.sleep(self._renew_every)

    async def _keep(self, bucket: KeyValue, doing: asyncio.Task[None]) -> str:
        """Renew until the lease is lost or the duty ends; returns why it stopped."""
        renewal_began = time.monotonic()
        while True:
            await asyncio.wait({doing}, timeout=self._renew_every)
            if doing.done():
                error = None if doing.cancelled() else doing.exception()
                if error is not None:
                    logger.error("duty failed", role=self._role, exc_info=error)
                return "the duty ended"
            attempt_began = time.monotonic()
            assert self._revision is not None
            try:
                renewed = await asyncio.wait_for(
                    kv.update(bucket, self._role, self._holder.encode(), last=self._revision),
                    timeout=self._renew_every,
                )
            except (TimeoutError, nats.errors.Error) as error:
                if time.monotonic() - renewal_began >= self._lease_seconds * 2 / 3:
                    self._held(None)
                    return f"not renewed in time ({error!r:.200})"
                continue
            if renewed is None:
                # It expired and another replica took it: stop at once.
                self._held(None)
                return "another replica holds it"
            self._held(renewed)
            renewal_began = attempt_began

    async def _release(self, bucket: KeyValue) -> None:
        """Hand the lease over at once (a clean stop), so nobody waits for it to expire."""
        revision = self._revision
        self._held(None)
        if revision is None:
            return
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await asyncio.wait_for(kv.delete(bucket, self._role, last=revision), timeout=self._renew_every)


class LeasedDuties:
    """A role's singleton duties, its outbox relay first, done while this replica holds the lease.

    The relay needs the JetStream context, which exists only once the broker is connected;
    ``connected`` hands it over. Until then ``notify_relay`` has nothing to wake, and loses
    nothing: a relay sends every unsent event when it starts.
    """

    def __init__(self, role: str, *, service_name: str, lease_seconds: float) -> None:
        self._role = role
        self._service_name = service_name
        self._lease_seconds = lease_seconds
        self._relay: OutboxRelay | None = None
        self._lease: asyncio.Task[None] | None = None

    def connected(self, relay: OutboxRelay) -> None:
        self._relay = relay

    def notify_relay(self) -> None:
        """Call after a commit that appended events (in any replica: the holder's relay wakes)."""
        if self._relay is not None:
            self._relay.notify()

    def start(self, js: JetStreamContext, others: dict[str, Duty] | None = None) -> None:
        """Ask for the lease from now on; while it is held, relay the outbox and do ``others``
        (by task name). One duty failing stops them all and gives the lease up."""
        relay = self._relay
        if relay is None:
            raise RuntimeError(f"{self._role}: the outbox relay starts only once connected")

        async def duties() -> None:
            # Tasks of their own, not a TaskGroup: a TaskGroup cancels its tasks only once, and
            # a duty that swallowed that cancellation (hub_common.tasks) kept the stop waiting.
            running = [asyncio.create_task(relay.run(), name="outbox-relay")]
            running += [asyncio.create_task(duty(), name=name) for name, duty in (others or {}).items()]
            try:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and (error := task.exception()) is not None:
                        raise error
            finally:
                await asyncio.gather(*(cancel_and_wait(task) for task in running))

        leadership = Leadership(
            js, self._role, holder=holder_name(self._service_name), lease_seconds=self._lease_seconds
        )
        self._lease = asyncio.create_task(leadership.run(duties), name=f"{self._role}-lease")

    async def stop(self) -> None:
        """Stop the duties and hand the lease over at once."""
        if self._lease is None:
            return
        await cancel_and_wait(self._lease)
