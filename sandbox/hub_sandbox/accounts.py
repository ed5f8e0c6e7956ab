"""Who signs in: users, the directories (tenants) they belong to, and authorization codes.

Any syntactically valid email address is a user. Its directory follows from the domain:
a demo tenant's own domain (``anna@cronus-sample.onmicrosoft.com`` is a member of the
sample client), otherwise a directory made for that domain on first sign-in, with the id
``uuid5(CATALOGUE_NAMESPACE, "directory/{domain}")`` (so ``@firm.example`` is the same
tenant on every machine). Those directories are remembered in the state dir, so their
authority (``/{id}``) keeps answering discovery after a restart.

A user's object id in a directory is ``uuid5(directory id, "user/{email}")``; signing into
another organisation's tenant makes the user a guest there, with that tenant's ``tid`` and
an object id of its own, as in Entra B2B.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hub_common.logging import get_logger
from hub_sandbox.tenants import CATALOGUE_NAMESPACE, SandboxTenant, TenantCatalogue

log = get_logger(__name__)

DIRECTORIES_FILE = "directories.json"
MAX_EMAIL_LENGTH = 254
# Syntactic check only (what a sign-in box accepts): local@domain.tld, no spaces.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?=.{1,253}$)"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def is_valid_email(text: str) -> bool:
    return len(text) <= MAX_EMAIL_LENGTH and _EMAIL.match(text) is not None and ".." not in text.split("@")[0]


@dataclass(frozen=True)
class Directory:
    """An Entra tenant users sign into: a demo client tenant or a user's own organisation."""

    id: uuid.UUID
    domain: str
    display_name: str
    # The demo tenant it is, when it is one (has BC); None for an organisation's directory.
    sandbox_tenant: SandboxTenant | None = None

    @property
    def region(self) -> str:
        return self.sandbox_tenant.locale.entra_region if self.sandbox_tenant else "WW"


def directory_id_for(domain: str) -> uuid.UUID:
    """The stable id of the directory of an email domain that is no demo tenant's."""
    return uuid.uuid5(CATALOGUE_NAMESPACE, f"directory/{domain.casefold()}")


def _from_tenant(tenant: SandboxTenant) -> Directory:
    return Directory(id=tenant.id, domain=tenant.domain, display_name=tenant.display_name, sandbox_tenant=tenant)


class Directories:
    """The demo tenants plus every organisation a user has signed in from."""

    def __init__(self, catalogue: TenantCatalogue, state_dir: Path | None) -> None:
        self._catalogue = catalogue
        self._path = state_dir / DIRECTORIES_FILE if state_dir else None
        self._lock = threading.Lock()
        self._by_domain: dict[str, uuid.UUID] = {}
        if self._path and self._path.exists():
            with contextlib.suppress(OSError, ValueError, TypeError):
                stored = json.loads(self._path.read_text(encoding="utf-8"))
                self._by_domain = {str(domain): uuid.UUID(str(value)) for domain, value in stored.items()}
        self._by_id = {value: domain for domain, value in self._by_domain.items()}

    def for_domain(self, domain: str) -> Directory:
        """The directory of an email domain, remembered from now on."""
        folded = domain.casefold()
        tenant = self._catalogue.find(folded)
        if tenant is not None:
            return _from_tenant(tenant)
        directory_id = directory_id_for(folded)
        with self._lock:
            if folded not in self._by_domain:
                self._by_domain[folded] = directory_id
                self._by_id[directory_id] = folded
                self._save()
        return Directory(id=directory_id, domain=folded, display_name=folded)

    def find(self, reference: str) -> Directory | None:
        """A directory by GUID or domain, as the first segment of an authority names it."""
        tenant = self._catalogue.find(reference)
        if tenant is not None:
            return _from_tenant(tenant)
        text = reference.strip().strip("{}").casefold()
        try:
            directory_id: uuid.UUID | None = uuid.UUID(text)
        except ValueError:
            directory_id = self._by_domain.get(text)
        domain = self._by_id.get(directory_id) if directory_id else None
        if directory_id is None or domain is None:
            return None
        return Directory(id=directory_id, domain=domain, display_name=domain)

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._path.with_suffix(".tmp")
            stored = {domain: str(value) for domain, value in self._by_domain.items()}
            temporary.write_text(json.dumps(stored, indent=1, sort_keys=True), encoding="utf-8")
            temporary.replace(self._path)
        except OSError as error:  # the directory still works until the next restart
            log.warning("could not save the sign-in directories", path=str(self._path), error=str(error))


@dataclass(frozen=True)
class SandboxUser:
    """A person, as their home directory knows them."""

    email: str
    home: Directory

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.given_name, self.family_name) if part)

    @property
    def given_name(self) -> str:
        return self._name_parts()[0]

    @property
    def family_name(self) -> str:
        parts = self._name_parts()
        return " ".join(parts[1:])

    def _name_parts(self) -> list[str]:
        local = self.email.split("@", 1)[0].split("+", 1)[0]
        parts = [part.capitalize() for part in re.split(r"[._\-]+", local) if part]
        return parts or [local]

    def object_id(self, directory_id: uuid.UUID) -> uuid.UUID:
        """The user's object id in a directory (home or, as a guest, another)."""
        return uuid.uuid5(directory_id, f"user/{self.email.casefold()}")

    @property
    def home_object_id(self) -> uuid.UUID:
        return self.object_id(self.home.id)


@dataclass(frozen=True)
class AuthorizationGrant:
    """What an authorization code stands for, kept until it is redeemed or expires."""

    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: SandboxUser
    tenant: Directory  # the directory signed into (tid): home, or one the user is a guest of
    authority: str  # the authority's first segment the code was asked at (casefolded)
    auth_time: int
    issued_at: float
    expires_at: float
    max_age_requested: bool = False
    session_id: str = ""


@dataclass
class _Slot:
    grant: AuthorizationGrant
    redeemed: bool = False


@dataclass
class AuthorizationCodes:
    """Single-use codes in memory (a restart forgets them, as a 10-minute code may be)."""

    _slots: dict[str, _Slot] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # Redeemed and expired codes are kept this long past expiry, so a replay is told
    # "already redeemed" or "expired" rather than "not valid".
    RETAIN_SECONDS = 3600.0

    def add(self, grant: AuthorizationGrant, now: float) -> None:
        with self._lock:
            for code in [c for c, s in self._slots.items() if s.grant.expires_at + self.RETAIN_SECONDS < now]:
                del self._slots[code]
            self._slots[grant.code] = _Slot(grant)

    def look_up(self, code: str) -> tuple[AuthorizationGrant, bool] | None:
        """The grant behind a code and whether it was redeemed already."""
        with self._lock:
            slot = self._slots.get(code)
            return (slot.grant, slot.redeemed) if slot else None

    def redeem(self, code: str) -> bool:
        """Mark a code redeemed; False if it already was (two racing redemptions)."""
        with self._lock:
            slot = self._slots.get(code)
            if slot is None or slot.redeemed:
                return False
            slot.redeemed = True
            return True
