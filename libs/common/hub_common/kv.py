"""Compare-and-set on NATS KV that behaves the same on one server and on a cluster.

nats-py recognises a lost compare-and-set only by the error code a single server answers
(10071). A replicated bucket's leader answers 10164 ("wrong last sequence") instead, which
nats-py raises as a plain BadRequestError, and its ``create`` then fails to take a key
whose last record is a delete. Every lease and grant of the hub goes through here.
"""

from __future__ import annotations

import nats.js.errors
from nats.js.kv import KeyValue

# JSStreamWrongLastSequenceErr (one server) and JSStreamWrongLastSequenceConstantErr (a
# clustered stream's leader).
_WRONG_LAST_SEQUENCE_CODES = frozenset({10071, 10164})


def _lost_the_race(error: nats.js.errors.APIError) -> bool:
    if isinstance(error, nats.js.errors.KeyWrongLastSequenceError):
        return True
    return getattr(error, "err_code", None) in _WRONG_LAST_SEQUENCE_CODES


async def update(bucket: KeyValue, key: str, value: bytes, *, last: int) -> int | None:
    """Write ``value`` if ``key``'s revision is still ``last`` (0: it has none); the new
    revision, or None when another writer came first."""
    try:
        return await bucket.update(key, value, last=last)
    except nats.js.errors.APIError as error:
        if _lost_the_race(error):
            return None
        raise


async def create(bucket: KeyValue, key: str, value: bytes) -> int | None:
    """Write ``value`` if ``key`` holds no value (never written, deleted or expired); the
    new revision, or None when it holds one."""
    revision = await update(bucket, key, value, last=0)
    if revision is not None:
        return revision
    try:
        await bucket.get(key)
    except nats.js.errors.KeyNotFoundError as gone:
        # A delete leaves a tombstone to write after; an expired key leaves nothing.
        tombstone = gone.entry.revision if gone.entry is not None else 0
        return await update(bucket, key, value, last=tombstone)
    return None


async def delete(bucket: KeyValue, key: str, *, last: int) -> bool:
    """Delete ``key`` only if it is still at revision ``last`` (a lease we still hold)."""
    try:
        return await bucket.delete(key, last=last)
    except nats.js.errors.APIError as error:
        if _lost_the_race(error):
            return False
        raise
