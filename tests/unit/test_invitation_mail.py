"""The invitation email greets the accountant once, whoever writes the greeting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub_invitations.mail import InvitationMail, html_body, plain_text


def _mail(welcome_text: str | None) -> InvitationMail:
    return InvitationMail(
        invitation_id="1",
        email="grace@litware-accounting.example",
        accountant_name="Grace",
        client_name="Mühlbach Gruppe",
        environment="Production",
        companies=("Mühlbach Holzbau AG",),
        welcome_text=welcome_text,
        expires_at=datetime(2026, 12, 17, 9, 0, tzinfo=UTC),
        accept_url="https://hub.example/invitations/accept?link=a",
        add_url="https://hub.example/invitations/accept?link=a&add=1",
    )


@pytest.mark.parametrize(
    "welcome",
    [
        "Hello Grace, please have a look at our books.",
        "Dear Grace,\n\nour books are ready.",
        "Hallo Grace!",
        "Bonjour Grace",
    ],
)
def test_a_welcome_text_that_greets_is_the_only_greeting(welcome: str) -> None:
    text, html = plain_text(_mail(welcome)), html_body(_mail(welcome))
    assert not text.startswith("Hello Grace,\n\nHello") and text.count("Grace") == welcome.count("Grace")
    assert "<p>Hello Grace,</p>" not in html
    assert text.startswith(welcome.split("\n")[0])


@pytest.mark.parametrize("welcome", [None, "", "Our year-end books are ready for you."])
def test_otherwise_the_mail_greets_once(welcome: str | None) -> None:
    text, html = plain_text(_mail(welcome)), html_body(_mail(welcome))
    assert text.startswith("Hello Grace,\n") and text.count("Hello") == 1
    assert html.count("<p>Hello Grace,</p>") == 1
