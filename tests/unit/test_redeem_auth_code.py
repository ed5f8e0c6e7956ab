"""A callback's code that msal cannot turn into this sign-in's identity is a failed sign-in
(shown on the page), never a server error. Entra's token endpoint cannot be made to answer
another sign-in's id token, or to be unreachable, for one test of the shared sandbox, so
msal's own exceptions stand in for them here."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msal
import pytest
from msal.oauth2cli.oidc import IdTokenNonceError

from hub_common.entra import redeem_auth_code

CLAIMS = {"iss": "https://login.example/t/v2.0", "email": "someone@contoso.com", "nonce": "theirs", "iat": 1, "exp": 2}


class _Redeeming(msal.ConfidentialClientApplication):  # type: ignore[misc]
    """msal's application whose redemption raises what msal raises in the case tested."""

    def __init__(self, raised: BaseException) -> None:
        self._raised = raised

    def acquire_token_by_auth_code_flow(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise self._raised


async def test_another_sign_ins_id_token_is_a_failed_sign_in_naming_no_one() -> None:
    error = IdTokenNonceError("11. Nonce must be the same value", time.time(), CLAIMS)
    answer = await redeem_auth_code(_Redeeming(error), {}, {"code": "c", "state": "s"})
    assert answer is not None and answer["error"] == "invalid_id_token"
    assert "IdTokenNonceError" in answer["error_description"]
    assert "someone@contoso.com" not in answer["error_description"], "someone else's identity on the page"


@pytest.mark.parametrize("raised", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")])
async def test_entra_unreachable_is_a_failed_sign_in(raised: Exception) -> None:
    answer = await redeem_auth_code(_Redeeming(raised), {}, {"code": "c", "state": "s"})
    assert answer is not None and answer["error"] == "temporarily_unavailable"
    assert "did not answer" in answer["error_description"]


async def test_a_callback_of_another_flow_is_told_apart() -> None:
    answer = await redeem_auth_code(_Redeeming(ValueError("state mismatch")), {}, {"code": "c", "state": "s"})
    assert answer is None
