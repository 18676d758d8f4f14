"""res.company, res.users, res.groups and res.partner."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from ..orm import fields, models

_HASH_ITERATIONS = 200_000
_HASH_FORMAT = re.compile(r"pbkdf2_sha256\$[1-9][0-9]{0,8}\$(?:[0-9a-f]{2})+\$[0-9a-f]{64}")


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
        return super().write(_with_hashed_password(vals))

    def set_password(self, password: str) -> None:
        self.write({"password": hash_password(password)})

    def check_password(self, password: str) -> bool:
        self.ensure_one()
        return check_password(password, self.password)

    def has_group(self, key: str) -> bool:
        self.ensure_one()
        return key in self.group_ids.mapped("key")


class Partner(models.Model):
    _name = "res.partner"
    _description = "Partner"
    _order = "name, id"

    name = fields.Char(required=True, index=True)
    email = fields.Char()
    company_id = fields.Many2one("res.company")

    def _default_company(self) -> Any:
        return self.env.company
