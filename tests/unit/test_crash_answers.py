"""A request the gateway fails on (a bug, an error no handler expects) is answered like any
other: JSON in the caller's language, with the security headers and the correlation id,
and counted. Starlette's own answer would be plain text outside every middleware."""

from __future__ import annotations

import httpx

from hub_common import metrics
from hub_common.settings import Mode
from hub_gateway.app import create_app
from hub_gateway.settings import GatewaySettings


async def test_a_crash_is_answered_with_the_headers_and_the_correlation_id_and_counted() -> None:
    app = create_app(GatewaySettings(_env_file=None, mode=Mode.DEV))

    # A route that fails as a bug would: only this test's app has it.
    @app.get("/api/v1/crash-for-a-test")
    async def crash() -> None:
        raise RuntimeError("a bug")

    def crashes_counted() -> float:
        sample = metrics.http_request_duration_seconds.labels(
            method="GET", route="/api/v1/crash-for-a-test", status_class="5xx"
        )
        return float(sample._sum.get())

    counted_before = crashes_counted()
    # Without the app's lifespan (the broker, the database): not what is tested.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        answer = await client.get(
            "/api/v1/crash-for-a-test", headers={"X-Correlation-Id": "c-500", "Accept-Language": "de"}
        )
    assert answer.status_code == 500
    assert answer.headers["X-Correlation-Id"] == "c-500"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "default-src" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Content-Language"] == "de"
    assert "Korrelations" in answer.json()["detail"], answer.text
    assert crashes_counted() > counted_before
