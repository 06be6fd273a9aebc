"""API keys, roles and feature-level access control.

A key is `flk_<id>_<secret>`: a public id and 256 random bits. Only the SHA-256 of the whole
key is stored (registry objects of kind `api_key`, under the store), so the store never holds
a usable key; with that much randomness a slow password hash adds nothing. The plain key is
shown once, when it is created.

Roles: `reader` (serve, historical, list, describe, stats), `writer` (also write), `admin`
(also register groups; every feature). Readers and writers are limited to the features their
patterns match: `customer_profile.*`, `customer_profile.age`, `customer_*.*` (shell-style
globs over `group.feature`; a bare `group` means the whole group).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from featurelake.errors import FeatureStoreError, SchemaValidationError
from featurelake.registry import Registry
from featurelake.server.errors import AuthenticationError, PermissionDeniedError

API_KEY_KIND = "api_key"
TOKEN_PREFIX = "flk"
ID_BYTES = 6
SECRET_BYTES = 32


class Role(StrEnum):
    """What a key may do, each role including the ones before it."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: who it is, what it may do, whether it is revoked (no secret)."""

    id: str
    name: str
    role: Role
    read: tuple[str, ...]
    write: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None
    digest: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "read": list(self.read),
            "write": list(self.write),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "sha256": self.digest,
        }

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the digest."""
        out = self.to_payload()
        del out["sha256"]
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ApiKey:
        return cls(
            id=str(payload["id"]),
            name=str(payload["name"]),
            role=Role(payload["role"]),
            read=tuple(payload.get("read") or ()),
            write=tuple(payload.get("write") or ()),
            created_at=str(payload["created_at"]),
            revoked_at=payload.get("revoked_at"),
            digest=str(payload.get("sha256", "")),
        )

    # -- permissions ---------------------------------------------------------------------------

    def has_role(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    def can(self, access: Access, group: str, feature: str) -> bool:
        """True when the key may read (or write) `group.feature`."""
        if self.role is Role.ADMIN:
            return True
        if access is Access.WRITE and not self.has_role(Role.WRITER):
            return False
        patterns = self.read if access is Access.READ else self.write
        ref = f"{group}.{feature}"
        return any(fnmatchcase(ref, pattern) for pattern in patterns)

    def require_role(self, role: Role, action: str) -> None:
        if not self.has_role(role):
            raise PermissionDeniedError(
                f"The API key '{self.name}' ({self.id}) has the role {self.role.value}; "
                f"{action} needs {role.value}.",
                code="role_forbidden",
                fix=f"use a key with the role {role.value} (featurelake api-key create NAME "
                f"--role {role.value}).",
            )

    def require(self, access: Access, features: Iterable[tuple[str, str]]) -> None:
        """Raise PermissionDeniedError naming every (group, feature) the key may not access."""
        if access is Access.WRITE:
            self.require_role(Role.WRITER, "writing features")
        denied = sorted({f"{g}.{f}" for g, f in features if not self.can(access, g, f)})
        if denied:
            shown = ", ".join(denied[:20]) + (" ..." if len(denied) > 20 else "")
            raise PermissionDeniedError(
                f"The API key '{self.name}' ({self.id}) may not {access.value} {shown}.",
                code="feature_forbidden",
                fix=f"ask an admin for a key whose --{access.value} patterns cover these "
                "features, or request only the features this key may "
                f"{access.value}.",
                features=denied,
            )


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its plain text (the only time the plain key exists)."""

    key: ApiKey
    token: str


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_token(token: str) -> str | None:
    """The key id inside a well-formed token, else None."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(key_id) != 2 * ID_BYTES or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id


def normalize_patterns(patterns: Iterable[str], what: str) -> tuple[str, ...]:
    """`group` becomes `group.*`; empty or malformed patterns are refused."""
    out: list[str] = []
    for raw in patterns:
        pattern = str(raw).strip()
        if not pattern or any(c.isspace() for c in pattern):
            raise SchemaValidationError(
                f"The {what} pattern {raw!r} is empty or contains spaces.",
                fix="use patterns such as 'customer_profile.*', 'customer_profile.age' or '*'.",
            )
        if pattern != "*" and "." not in pattern:
            pattern += ".*"
        if pattern not in out:
            out.append(pattern)
    return tuple(out)


class ApiKeyStore:
    """Create, revoke, list and verify API keys kept in the store's registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def create(
        self,
        name: str,
        role: Role | str = Role.READER,
        *,
        read: Sequence[str] = ("*",),
        write: Sequence[str] | None = None,
    ) -> CreatedKey:
        """A new key. `write` defaults to `read` for writers and admins (nothing for readers)."""
        if not isinstance(name, str) or not name.strip():
            raise SchemaValidationError(
                "An API key needs a name.", fix="name it after its user, e.g. 'ranking-service'."
            )
        try:
            chosen = Role(str(role).lower())
        except ValueError:
            raise SchemaValidationError(
                f"Unknown role '{role}'.", fix="use one of: reader, writer, admin."
            ) from None
        read_patterns = normalize_patterns(read, "read")
        if chosen is Role.READER:
            if write:
                raise SchemaValidationError(
                    "A reader key cannot have write patterns.",
                    fix="give the key the role writer, or drop the write patterns.",
                )
            write_patterns: tuple[str, ...] = ()
        else:
            write_patterns = normalize_patterns(read_patterns if write is None else write, "write")
        for _ in range(5):
            key_id = secrets.token_hex(ID_BYTES)
            token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            key = ApiKey(
                id=key_id,
                name=name.strip(),
                role=chosen,
                read=read_patterns,
                write=write_patterns,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                digest=digest_of(token),
            )
            if self.registry.put_object_if_absent(API_KEY_KIND, key_id, key.to_payload()):
                return CreatedKey(key, token)
        raise FeatureStoreError(  # 5 random 48-bit ids colliding: never in practice
            "Could not find a free API key id.", fix="run the command again."
        )

    def get(self, key_id: str) -> ApiKey:
        payload = self.registry.get_object(API_KEY_KIND, key_id)
        if payload is None:
            raise SchemaValidationError(
                f"There is no API key with the id '{key_id}'.",
                fix="list the keys with 'featurelake api-key list'.",
            )
        return ApiKey.from_payload(payload)

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept for the audit trail); revoking twice is a no-op."""
        self.registry.invalidate()
        key = self.get(key_id)
        if key.revoked:
            return key
        payload = key.to_payload()
        payload["revoked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.registry.put_object(API_KEY_KIND, key_id, payload)
        return ApiKey.from_payload(payload)

    def list_keys(self) -> list[ApiKey]:
        """Every key, oldest first (revoked ones too)."""
        keys = [ApiKey.from_payload(p) for p in self.registry.list_objects(API_KEY_KIND).values()]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def verify(self, token: str | None) -> ApiKey:
        """The key a request presents, or AuthenticationError (missing, unknown, revoked)."""
        if not token:
            raise AuthenticationError(
                "The request has no API key.",
                code="missing_api_key",
                fix="send the key in the X-API-Key header (or 'Authorization: Bearer KEY').",
            )
        key_id = parse_token(token)
        payload = self.registry.get_object(API_KEY_KIND, key_id) if key_id else None
        if payload is None or not hmac.compare_digest(
            digest_of(token), str(payload.get("sha256", ""))
        ):
            raise AuthenticationError(
                "The API key is not valid.",
                code="invalid_api_key",
                fix="check the key; create one with 'featurelake api-key create NAME'.",
                key_id=key_id,
            )
        key = ApiKey.from_payload(payload)
        if key.revoked:
            raise AuthenticationError(
                f"The API key '{key.name}' ({key.id}) was revoked at {key.revoked_at}.",
                code="revoked_api_key",
                fix="ask an admin for a new key ('featurelake api-key create NAME').",
                key_id=key.id,
            )
        return key
