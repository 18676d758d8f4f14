"""res.company, res.users, res.groups and res.partner."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from ..orm import fields, models

_HASH_ITERATIONS = 200_000
_HASH_FORMAT = re.compile(r"pbkdf2_sha256\$[1-9][0-9]{0,8}\$(?:[0-9a-f]{2})+\$[0-9a-f]{64}")
#: the shortest password that ``set_password`` and ``job-worker users`` accept
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """PBKDF2-SHA256, stored as ``pbkdf2_sha256$iterations$salt$hash`` (hex)."""
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be a non-empty string")
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _HASH_ITERATIONS)
    return f"pbkdf2_sha256${_HASH_ITERATIONS}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password`."""
    if not stored or not isinstance(password, str) or not _HASH_FORMAT.fullmatch(stored):
        return False
    _scheme, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
    )
    return hmac.compare_digest(candidate.hex(), digest)


def check_password_policy(password: Any) -> str:
    """``password`` if it may be a user's password; ValueError naming the rule otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def spend_password_check(password: str) -> None:
    """Check ``password`` against a throw-away hash: what a log-in with an unknown
    login spends, so that it takes as long as one with a known login."""
    check_password(password, _dummy_hash())


def _with_hashed_password(vals: Any) -> Any:
    """``vals`` with a plain-text ``password`` replaced by its hash (a hash is kept as is)."""
    if not isinstance(vals, dict):
        return vals
    password = vals.get("password")
    if not isinstance(password, str) or _HASH_FORMAT.fullmatch(password):
        return vals  # nothing to hash; a non-string is refused by the field itself
    return {**vals, "password": hash_password(password)}


class Base(models.AbstractModel):
    """Inherited by every model: extend it (``_inherit = "base"``) to add to all of them."""

    _name = "base"
    _description = "Base"


class Company(models.Model):
    _name = "res.company"
    _description = "Company"
    _order = "name, id"

    name = fields.Char(required=True)


class Groups(models.Model):
    _name = "res.groups"
    _description = "Access group"
    _indexes = [models.Index("res_groups_key_unique", ("key",), unique=True)]

    name = fields.Char(required=True)
    key = fields.Char(required=True, help="Stable identifier, e.g. queue_job.group_manager")


class Users(models.Model):
    _name = "res.users"
    _description = "User"
    _order = "login, id"
    _indexes = [models.Index("res_users_login_unique", ("login",), unique=True)]

    name = fields.Char(required=True)
    login = fields.Char(required=True)
    company_id = fields.Many2one(
        "res.company",
        required=True,
        ondelete="restrict",
        default=lambda self: self.env.company.id if self.env.uid != 0 else 1,
    )
    lang = fields.Char(default="en_US")
    tz = fields.Char(default="UTC")
    active = fields.Boolean(default=True)
    password = fields.Char(help="Password hash (PBKDF2): a password written here is hashed")
    group_ids = fields.Many2many("res.groups", string="Groups")

    def create(self, vals_list: Any) -> Any:
        if isinstance(vals_list, list | tuple):
            return super().create([_with_hashed_password(vals) for vals in vals_list])
        return super().create(_with_hashed_password(vals_list))

    def write(self, vals: Any) -> bool:
        done = super().write(_with_hashed_password(vals))
        if isinstance(vals, dict) and ("password" in vals or vals.get("active") is False):
            # a new password or a disabled user ends every dashboard session
            self.env["res.users.session"].search([("user_id", "in", self.ids)]).unlink()
        return done

    def unlink(self) -> bool:
        self.env["res.users.session"].search([("user_id", "in", self.ids)]).unlink()
        return super().unlink()

    def set_password(self, password: str) -> None:
        """Set a new password (:data:`MIN_PASSWORD_LENGTH` characters at least); this
        ends the user's dashboard sessions."""
        self.write({"password": hash_password(check_password_policy(password))})

    def check_password(self, password: str) -> bool:
        self.ensure_one()
        return check_password(password, self.password)

    def has_group(self, key: str) -> bool:
        self.ensure_one()
        return key in self.group_ids.mapped("key")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserSession(models.Model):
    """A dashboard log-in: the browser holds a random token, the table its SHA-256.

    A session ends at ``expires_at`` (an absolute lifetime set at log-in), at
    log-out, and when its user's password changes or the user is disabled or
    deleted.
    """

    _name = "res.users.session"
    _description = "Dashboard session"
    _indexes = [models.Index("res_users_session_token_unique", ("token_hash",), unique=True)]

    user_id = fields.Many2one("res.users", required=True, ondelete="cascade", index=True)
    token_hash = fields.Char(required=True)
    expires_at = fields.Datetime(required=True, index=True)

    def _open(self, user_id: int, lifetime: timedelta) -> str:
        """Start a session for ``user_id``; return the token the browser keeps."""
        now = fields.Datetime.now()
        self.search([("expires_at", "<=", now)]).unlink()  # expired ones go on the way
        token = secrets.token_urlsafe(32)
        self.create(
            {"user_id": user_id, "token_hash": _token_hash(token), "expires_at": now + lifetime}
        )
        return token

    def _find(self, token: Any, now: datetime) -> Any:
        """The live session of ``token`` (an empty recordset when there is none)."""
        if not isinstance(token, str) or not token:
            return self.browse()
        return self.search(
            [("token_hash", "=", _token_hash(token)), ("expires_at", ">", now)], limit=1
        )

    def _close(self, token: Any) -> None:
        if isinstance(token, str) and token:
            self.search([("token_hash", "=", _token_hash(token))]).unlink()


class LoginFailure(models.Model):
    """A failed dashboard log-in, counted per login and per client address to
    slow down password guessing (kept for the throttling window only)."""

    _name = "res.users.login.failure"
    _description = "Failed log-in"

    login = fields.Char(required=True, index=True)
    address = fields.Char(required=True, index=True)
    at = fields.Datetime(required=True, index=True)


class Partner(models.Model):
    _name = "res.partner"
    _description = "Partner"
    _order = "name, id"

    name = fields.Char(required=True, index=True)
    email = fields.Char()
    company_id = fields.Many2one("res.company")
