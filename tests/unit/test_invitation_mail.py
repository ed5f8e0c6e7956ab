"""The invitation email greets the accountant once, whoever writes the greeting, and is
written in its invitation's language."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest

from hub_common.events import ColleagueInvited, Role
from hub_invitations import colleague_mail
from hub_invitations.mail import InvitationMail, compose, html_body, plain_text
from hub_invitations.service import MAIL_CLAIM, mail_claim
from hub_invitations.settings import InvitationsSettings

EVENT_ID = str(uuid.uuid4())


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


def test_the_mail_names_who_raised_it_and_in_which_tenant() -> None:
    """The client's name is typed by whoever raised the invitation; the administrator and
    the tenant come from their verified token, so the mail says those too."""
    tenant = "3e927542-b688-5b57-9ec6-8896688ef271"
    mail = replace(_mail(None), raised_by="admin@muhlbach.example", tenant=tenant)
    said = (
        f"Raised by admin@muhlbach.example, an administrator of the Microsoft Entra tenant {tenant},"
        " whose sign-in the hub checked."
    )
    assert said in plain_text(mail)
    assert said in html_body(mail)
    assert "Raised by" not in plain_text(_mail(None)), "not said without a verified administrator"


# ---------------------------------------------------------------- in the recipient's language


def test_an_invitation_mail_in_dutch() -> None:
    mail = replace(_mail(None), language="nl")
    assert mail.subject == "U bent door Mühlbach Gruppe uitgenodigd voor Accountant Hub"
    text = plain_text(mail)
    assert text.startswith("Beste Grace,\n")
    assert "Mühlbach Gruppe nodigt u uit om zijn Business Central-bedrijven te volgen in Accountant Hub:" in text
    assert "(omgeving Production)." in text
    assert "Toegang accepteren:" in text
    # The expiry in Dutch words: the month's name is the language's.
    assert "tot 17 december 2026, 09:00 UTC." in text
    html = html_body(mail)
    assert '<html lang="nl">' in html and "Accepteren en Mühlbach Gruppe aan uw dashboard toevoegen" in html
    message = compose(mail, InvitationsSettings(_env_file=None))
    assert message["Content-Language"] == "nl"
    assert message["Subject"] == mail.subject


def test_a_colleague_invitation_in_the_inviting_accountants_language() -> None:
    invited = ColleagueInvited(
        email="jan@litware-accounting.example",
        role=Role.STAFF,
        invited_by=uuid.uuid4(),
        firm_name="Litware Accountants",
        inviter_name="Grace de Vries",
        language="nl",
    )
    message = colleague_mail.compose(invited, InvitationsSettings(_env_file=None), event_id=EVENT_ID)
    assert message["Subject"] == "Grace de Vries heeft u uitgenodigd voor Litware Accountants op Accountant Hub"
    # From the event: the same invitation mailed twice is one mail in the mailbox.
    assert message["Message-ID"] == f"<invitation-{EVENT_ID}@accountant-hub.local>"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "om als medewerker lid te worden van Litware Accountants" in text
    assert "Meld u aan met jan@litware-accounting.example om lid te worden:" in text


def test_a_colleague_invitation_from_before_languages_is_english() -> None:
    invited = ColleagueInvited.model_validate(
        {
            "email": "jan@litware-accounting.example",
            "role": "admin",
            "invited_by": str(uuid.uuid4()),
            "firm_name": "Litware Accountants",
            "inviter_name": "Grace",
        }
    )
    message = colleague_mail.compose(invited, InvitationsSettings(_env_file=None), event_id=EVENT_ID)
    assert message["Subject"] == "Grace invited you to Litware Accountants on Accountant Hub"


def test_a_mail_is_held_longer_than_its_sending_can_take() -> None:
    assert mail_claim(InvitationsSettings(_env_file=None, smtp_timeout_seconds=10)) == MAIL_CLAIM
    assert mail_claim(InvitationsSettings(_env_file=None, smtp_timeout_seconds=60)) == timedelta(minutes=10)


ENCODED_REPLY_TO = "=?utf-8?q?x=0D=0AReply-To=3A_attacker=40evil.example?="
ENCODED_RECIPIENT = "=?utf-8?q?x=2C_spam=40evil.example=2C_=3C?="


def test_an_encoded_word_in_a_name_adds_no_header_and_no_recipient() -> None:
    """Names are typed by a client's administrator or come from Entra: one holding an RFC
    2047 encoded word must not be decoded into a Reply-To or further recipients."""
    mail = replace(_mail(None), client_name=ENCODED_REPLY_TO, accountant_name=ENCODED_RECIPIENT)
    received = message_from_bytes(compose(mail, InvitationsSettings(_env_file=None)).as_bytes(), policy=default)
    assert received["Reply-To"] is None
    assert [str(address.addr_spec) for address in received["To"].addresses] == ["grace@litware-accounting.example"]
    assert "Reply-To" in received["Subject"]  # the name is still shown, as text

    invited = ColleagueInvited(
        email="jan@litware-accounting.example",
        role=Role.STAFF,
        invited_by=uuid.uuid4(),
        firm_name="Litware",
        inviter_name=ENCODED_REPLY_TO,
    )
    colleague = colleague_mail.compose(invited, InvitationsSettings(_env_file=None), event_id=EVENT_ID)
    assert message_from_bytes(colleague.as_bytes(), policy=default)["Reply-To"] is None
