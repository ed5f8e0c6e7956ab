"""Which webhook URLs the hub POSTs to (no server-side request forgery), the signature a
receiver checks, and webhook secrets sealed at rest."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hub_common.purpose_keys import Purpose, derive
from hub_common.sealing import Sealer, Unsealable
from hub_registry.webhooks import (
    LOOKUPS,
    LOOKUPS_BUSY,
    NOT_PUBLIC,
    Attempt,
    HostLookups,
    HostNotLookedUp,
    LookupsBusy,
    Outcome,
    UnsafeWebhook,
    new_secret,
    origin,
    post,
    resolve_target,
    signature,
)
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # not https
        "ftp://93.184.215.14/hook",
        "https://user:pass@93.184.215.14/hook",  # credentials in the URL
        "https://127.0.0.1/hook",  # loopback
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # loopback dressed as IPv6
        "https://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://[fd00:ec2::254]/hook",  # AWS's IPv6 metadata (unique local)
        "https://100.64.0.1/hook",  # shared address space
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",  # multicast
        "https:///no-host",
        "https://93.184.215.14:99999/hook",  # no such port
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 to the cloud metadata address
        "https://[64:ff9b::a00:5]/hook",  # NAT64 to 10.0.0.5
        "https://[64:ff9b:1::a00:5]/hook",  # local-use NAT64 prefix
        "https://[2002:a00:5::1]/hook",  # 6to4 around 10.0.0.5
        "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",  # Teredo around 10.0.0.1
        "https://[::a9fe:a9fe]/latest/meta-data",  # IPv4-compatible cloud metadata address
        "https://[::127.0.0.1]/hook",  # IPv4-compatible loopback
        "https://[::ffff:0:a9fe:a9fe]/latest/meta-data",  # IPv4-translated (SIIT) metadata address
        "https://[fec0::1]/hook",  # site-local
        "https://192.0.0.8/hook",  # IETF protocol assignments
        "https://168.63.129.16/machine?comp=goalstate",  # Azure's WireServer (a public address)
        "https://[::ffff:168.63.129.16]/machine",  # the same, dressed as IPv6
    ],
)
async def test_a_webhook_url_that_could_reach_inside_is_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhook):
        await resolve_target(url, allow_loopback=False, firm="f", timeout_seconds=5)


async def test_a_host_not_found_and_a_private_one_get_the_same_answer() -> None:
    """A finer answer would let an accountant map the hosting network's internal names."""
    answers = []
    for url in ("https://10.1.2.3/hook", "https://no-such-host.invalid/hook", "https://127.0.0.1/hook"):
        with pytest.raises(UnsafeWebhook) as refusal:
            await resolve_target(url, allow_loopback=False, firm="f", timeout_seconds=5)
        answers.append(refusal.value.message)
        assert "10.1.2.3" not in str(refusal.value) or "10.1.2.3" in url
    assert answers == [NOT_PUBLIC] * 3


async def test_an_internationalized_host_is_looked_up_and_sent_in_its_ascii_form() -> None:
    with pytest.raises(UnsafeWebhook):
        await resolve_target(
            "https://münchen.invalid/hook", allow_loopback=False, firm="f", timeout_seconds=5
        )  # not found, no crash
    target = await resolve_target("https://[2606:4700::1]:8443/hook", allow_loopback=False, firm="f", timeout_seconds=5)
    assert target.host_header == "[2606:4700::1]:8443"


async def test_a_public_https_address_is_taken_and_pinned() -> None:
    target = await resolve_target(
        "https://93.184.215.14:8443/hooks/hub?x=1", allow_loopback=False, firm="f", timeout_seconds=5
    )
    assert (target.host, target.addresses) == ("93.184.215.14", ("93.184.215.14",))


async def test_loopback_only_when_the_setting_allows_it_and_then_http_too() -> None:
    target = await resolve_target("http://127.0.0.1:8080/hook", allow_loopback=True, firm="f", timeout_seconds=5)
    assert target.addresses == ("127.0.0.1",)
    with pytest.raises(UnsafeWebhook):
        await resolve_target(
            "http://10.0.0.1/hook", allow_loopback=True, firm="f", timeout_seconds=5
        )  # still not private
    with pytest.raises(UnsafeWebhook):
        await resolve_target(
            "http://93.184.215.14/hook", allow_loopback=True, firm="f", timeout_seconds=5
        )  # nor plain http outside


def test_the_signature_is_hmac_sha256_over_the_timestamp_a_dot_and_the_body() -> None:
    body = b'{"type":"AlertRaised"}'
    expected = hmac.new(b"whsec_test", b"1764777600." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_test", 1764777600, body) == f"sha256={expected}"
    assert signature("whsec_test", 1764777601, body) != signature("whsec_test", 1764777600, body)
    assert new_secret() != new_secret() and new_secret().startswith("whsec_")


def test_a_sealed_secret_opens_only_with_its_key_purpose_and_context() -> None:
    key = "a-secret-key-long-enough-for-the-tests-0123"
    sealer = Sealer(derive(key, Purpose.WEBHOOK_SECRETS))
    sealed = sealer.seal("whsec_abc", context="rule-1")
    assert "whsec_abc" not in sealed
    assert sealer.seal("whsec_abc", context="rule-1") != sealed  # a fresh nonce each time
    assert sealer.open(sealed, context="rule-1") == "whsec_abc"
    for opener, context in (
        (sealer, "rule-2"),  # copied to another rule
        (Sealer(derive(key, Purpose.INVITATION_LINKS)), "rule-1"),  # the key of another purpose
        (Sealer(derive("another-secret-key-long-enough-for-tests-01", Purpose.WEBHOOK_SECRETS)), "rule-1"),
    ):
        with pytest.raises(Unsealable):
            opener.open(sealed, context=context)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(Unsealable):
        sealer.open(tampered, context="rule-1")
    with pytest.raises(Unsealable):
        sealer.open("v9.abc.def", context="rule-1")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.slack.com/services/T0/B0/secrettoken", "https://hooks.slack.com"),
        ("https://x.webhook.office.com/webhookb2/abc@def/IncomingWebhook/tok?sig=1", "https://x.webhook.office.com"),
        ("https://user:pass@Hooks.Example.com:8443/h?key=s#frag", "https://hooks.example.com:8443"),
        ("https://[2001:db8::1]:444/hook", "https://[2001:db8::1]:444"),
        ("https://hooks.example.com:99999/h", "https://hooks.example.com"),
    ],
)
def test_the_audit_stream_gets_a_webhooks_scheme_host_and_port_only(url: str, host: str) -> None:
    assert origin(url) == host


async def _post_alert(http: httpx.AsyncClient, url: str, *, lookups: HostLookups = LOOKUPS) -> Attempt:
    """One signed POST of an empty alert by firm "f", as the sender makes it."""
    return await post(
        http,
        url,
        body=b"{}",
        secret="whsec_x",
        event_id="e",
        event_type="AlertRaised",
        timestamp=0,
        allow_loopback=False,
        timeout_seconds=2,
        firm="f",
        lookups=lookups,
    )


def _slow_hosts_hang(hung: threading.Event) -> Callable[[str, int], list[tuple[Any, ...]]]:
    """A resolver whose name server for *.slow.example answers nothing until ``hung`` is
    set (then fails); every other host is a public address."""

    def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
        if host.endswith("slow.example"):
            hung.wait(30)
            raise OSError("no answer")
        return [(0, 0, 0, "", ("93.184.215.14", port))]

    return lookup


async def test_a_firm_whose_name_server_never_answers_holds_only_its_own_lookups() -> None:
    """A lookup runs in a thread nothing can stop: a firm's abandoned ones hold only the
    firm's own few places, and another firm's lookups go on at once."""
    hung = threading.Event()

    lookup = _slow_hosts_hang(hung)
    lookups = HostLookups(per_firm=4, threads=8, lookup=lookup)
    try:
        slow = [
            resolve_target(
                f"https://h{number}.slow.example/hook",
                allow_loopback=False,
                firm="slow firm",
                timeout_seconds=0.2,
                lookups=lookups,
            )
            for number in range(4)
        ]
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
        assert all(isinstance(outcome, HostNotLookedUp) for outcome in outcomes), outcomes
        assert lookups.running("slow firm") == 4  # given up, still holding their threads
        started = time.monotonic()
        with pytest.raises(HostNotLookedUp) as refused:
            await resolve_target(
                "https://h5.slow.example/hook",
                allow_loopback=False,
                firm="slow firm",
                timeout_seconds=5,
                lookups=lookups,
            )
        assert time.monotonic() - started < 1 and "still running" in refused.value.reason
        # Not looked up at all: said as the firm's hold-up, not as a host the hub refuses.
        assert isinstance(refused.value, LookupsBusy) and refused.value.message == LOOKUPS_BUSY
        for other in range(6):  # more than the pool has threads left beside the slow firm's
            target = await resolve_target(
                "https://receiver.example/hook",
                allow_loopback=False,
                firm=f"firm {other}",
                timeout_seconds=1,
                lookups=lookups,
            )
            assert target.addresses == ("93.184.215.14",)
    finally:
        hung.set()
    # The threads end once the name server answers, and give the firm its places back.
    await asyncio.to_thread(eventually, lambda: lookups.running("slow firm") == 0, "the lookups to end", 5)


async def test_a_delivery_whose_host_lookup_fails_is_tried_again_later() -> None:
    """A name server's outage passes: not given up at the first try, as a refusal is."""
    async with httpx.AsyncClient() as http:

        async def post_to(url: str) -> Attempt:
            return await _post_alert(http, url)

        attempt = await post_to("https://no-such-host.invalid/hook")
        assert attempt.outcome is Outcome.TRANSIENT and "name lookup failed" in attempt.detail
        refused = await post_to("https://10.1.2.3/hook")
        assert refused.outcome is Outcome.PERMANENT


async def test_a_lookup_given_up_while_it_waited_for_a_thread_gives_its_place_back() -> None:
    """Every thread busy (a name server's outage): a lookup that times out before a thread
    took it never runs, and the firm's place comes back at once (it stayed taken for good)."""
    hung = threading.Event()

    def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
        hung.wait(30)
        raise OSError("no answer")

    lookups = HostLookups(per_firm=4, threads=1, lookup=lookup)
    try:
        first = asyncio.ensure_future(
            resolve_target("https://a.example/h", allow_loopback=False, firm="a", timeout_seconds=5, lookups=lookups)
        )
        await asyncio.sleep(0.1)  # it holds the one thread
        for _ in range(2):
            with pytest.raises(HostNotLookedUp):
                await resolve_target(
                    "https://b.example/h", allow_loopback=False, firm="b", timeout_seconds=0.1, lookups=lookups
                )
        await asyncio.to_thread(eventually, lambda: lookups.running("b") == 0, "firm b's places back", 2)
    finally:
        hung.set()
    with pytest.raises(HostNotLookedUp):
        await first


async def test_a_lookup_that_waited_for_a_thread_still_gets_its_whole_time() -> None:
    """The name server's time starts when a thread takes the lookup: one queued behind
    another firm's slow lookup is not failed for the time it waited."""

    def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
        time.sleep(0.4)
        return [(0, 0, 0, "", ("93.184.215.14", port))]

    lookups = HostLookups(per_firm=4, threads=1, lookup=lookup)
    first, second = await asyncio.gather(
        resolve_target("https://a.example/h", allow_loopback=False, firm="a", timeout_seconds=0.6, lookups=lookups),
        resolve_target("https://b.example/h", allow_loopback=False, firm="b", timeout_seconds=0.6, lookups=lookups),
    )
    assert first.addresses == second.addresses == ("93.184.215.14",)


async def test_a_delivery_the_firms_busy_lookups_held_back_is_deferred_not_failed() -> None:
    """Every lookup place of the firm held by hosts that never answer: the delivery to a
    healthy receiver is put off (DEFERRED, not one of its attempts), not failed."""
    hung = threading.Event()

    lookup = _slow_hosts_hang(hung)
    lookups = HostLookups(per_firm=2, threads=8, lookup=lookup)
    try:
        for number in range(2):
            with pytest.raises(HostNotLookedUp) as abandoned:
                await resolve_target(
                    f"https://h{number}.slow.example/hook",
                    allow_loopback=False,
                    firm="f",
                    timeout_seconds=0.1,
                    lookups=lookups,
                )
            assert not isinstance(abandoned.value, LookupsBusy)  # looked up: the name server's fault
        async with httpx.AsyncClient() as http:
            attempt = await _post_alert(http, "https://receiver.example/hook", lookups=lookups)
        assert attempt.outcome is Outcome.DEFERRED and "not looked up yet" in attempt.detail
    finally:
        hung.set()
