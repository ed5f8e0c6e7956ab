"""The dev mailbox: what the SMTP sink keeps, one JSON file per message, and how to read it.

Shared by the sink (writes) and the gateway's dev mail page (reads), which never import
each other.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub_common.logging import get_logger

logger = get_logger(__name__)


class Mail(BaseModel):
    """One message the sink received."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: uuid.UUID
    to: list[str]
    sender: str = Field(alias="from")
    subject: str
    text: str | None
    html: str | None
    received_at: datetime


def store(mail: Mail, folder: Path) -> Path:
    """Write one message as JSON, atomically (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{mail.received_at:%Y%m%dT%H%M%S%fZ}-{mail.id.hex[:12]}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(mail.model_dump_json(by_alias=True, indent=1), encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_mailbox(folder: Path | str) -> list[Mail]:
    """Every message in the sink's folder, newest first; unreadable files are skipped."""
    directory = Path(folder)
    if not directory.is_dir():
        return []
    mails: list[Mail] = []
    for path in sorted(directory.glob("*.json"), reverse=True):
        try:
            mails.append(Mail.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError) as error:
            logger.warning("skipping an unreadable mail file", path=str(path), error=str(error)[:200])
    return mails
