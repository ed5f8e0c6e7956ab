"""Invitation links: signed, tamper-evident, and only a hash of the token is kept."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from hub_common.purpose_keys import Purpose, derive
from hub_invitations.links import TamperedLink, new_token, read_link, sign_link, token_hash, token_matches

KEY = derive("a test secret", Purpose.INVITATION_LINKS)


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_a_signed_link_reads_back() -> None:
    invitation_id, token = uuid.uuid4(), new_token()
    link = sign_link(KEY, invitation_id, token)
    assert link.startswith(f"{invitation_id}.{token}.")
    parts = read_link(KEY, link)
    assert (parts.invitation_id, parts.token) == (invitation_id, token)


def test_only_the_hash_matches_the_token() -> None:
    token = new_token()
    assert len(token) == 43
    stored = token_hash(token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored
    assert token_matches(token, stored)
    assert not token_matches(_flip(token, 0), stored)


@pytest.mark.parametrize("part", [0, 1, 2])
@pytest.mark.parametrize("position", [0, 10, -1])
def test_any_changed_character_is_caught(part: int, position: int) -> None:
    invitation_id, token = uuid.uuid4(), new_token()
    pieces = sign_link(KEY, invitation_id, token).split(".")
    index = position if position >= 0 else len(pieces[part]) + position
    if part == 0 and pieces[0][index] == "-":
        index += 1
    changed = pieces.copy()
    changed[part] = _flip(pieces[part], index)
    with pytest.raises(TamperedLink):
        read_link(KEY, ".".join(changed))


@pytest.mark.parametrize(
    "broken",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "not-a-uuid.x.y",
        "{id}.{token}",
        "{id}.{token}.",
        "{id}..{mac}",
        "{ID}.{token}.{mac}",
    ],
)
def test_incomplete_or_reshaped_links_are_refused(broken: str) -> None:
    invitation_id, token = uuid.uuid4(), new_token()
    mac = sign_link(KEY, invitation_id, token).rsplit(".", 1)[1]
    link = broken.format(id=invitation_id, ID=str(invitation_id).upper(), token=token, mac=mac)
    with pytest.raises(TamperedLink):
        read_link(KEY, link)


def test_another_secret_does_not_verify() -> None:
    link = sign_link(KEY, uuid.uuid4(), new_token())
    with pytest.raises(TamperedLink):
        read_link(derive("another secret", Purpose.INVITATION_LINKS), link)
