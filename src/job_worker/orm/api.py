"""The environment: a cursor, a user and a context, through which models are reached."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..db import Cursor
    from .models import BaseModel
    from .registry import Registry

SUPERUSER_ID = 1


class Environment(Mapping):
    """``env[model_name]`` gives an empty recordset of that model.

    Environments on one cursor share one record cache, so a write through one
    is seen through the others.
    """

    def __init__(
        self, cr: Cursor, uid: int, context: Mapping[str, Any] | None = None, su: bool | None = None
    ):
        if cr.registry is None:
            raise ValueError("the cursor was not opened by a Registry (use registry.cursor())")
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise TypeError(f"uid must be a res.users id (int), got {uid!r}")
        self.cr = cr
        self.uid = uid
        self.context: Mapping[str, Any] = MappingProxyType(dict(context or {}))
        self.su = uid == SUPERUSER_ID if su is None else su
        self.registry: Registry = cr.registry
        self.cache = cr.cache

    def __getitem__(self, model_name: str) -> BaseModel:
        return self.registry[model_name](self, ())

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.models)

    def __len__(self) -> int:
        return len(self.registry.models)

    def __contains__(self, model_name: object) -> bool:
        return model_name in self.registry.models

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Environment)
            and (self.cr, self.uid, self.su) == (other.cr, other.uid, other.su)
            and dict(self.context) == dict(other.context)
        )

    def __hash__(self) -> int:
        return hash((id(self.cr), self.uid, self.su))

    def __repr__(self) -> str:
        return f"<Environment uid={self.uid} su={self.su} context={dict(self.context)!r}>"

    def __call__(
        self,
        cr: Cursor | None = None,
        user: Any = None,
        context: Mapping[str, Any] | None = None,
        su: bool | None = None,
    ) -> Environment:
        """A copy of this environment with some of its parts replaced."""
        uid = self.uid if user is None else getattr(user, "id", user)
        if su is None:
            su = self.su if user is None else None
        return Environment(cr or self.cr, uid, self.context if context is None else context, su)

    @property
    def user(self) -> BaseModel:
        return self["res.users"].browse(self.uid)

    @functools.cached_property
    def company(self) -> BaseModel:
        """The first of the context's ``allowed_company_ids``, else the user's company
        (worked out once per environment, as in Odoo)."""
        allowed = self.context.get("allowed_company_ids")
        if allowed:
            return self["res.company"].browse(allowed[0])
        return self.user.sudo().company_id.with_env(self)

    @property
    def companies(self) -> BaseModel:
        allowed = self.context.get("allowed_company_ids")
        return self["res.company"].browse(allowed) if allowed else self.company

    @property
    def lang(self) -> str | None:
        return self.context.get("lang")

    @property
    def tz(self) -> str | None:
        return self.context.get("tz")

    def invalidate_all(self) -> None:
        """Forget every cached record value (after writing with raw SQL)."""
        self.cache.clear()


#: the options ``@periodic`` takes besides the schedule (the job options of a cron row)
PERIODIC_OPTIONS = frozenset(
    {
        "name",
        "channel",
        "priority",
        "max_retries",
        "timeout",
        "description",
        "catch_up",
        "max_catch_up",
        "no_overlap",
        "active",
    }
)


def periodic(
    cron: str | None = None, *, interval: int | None = None, tz: str = "UTC", **options: Any
) -> Any:
    """Declare a periodic job on a model method, synced to a ``queue.cron`` row when
    ``job-worker init`` or ``job-worker worker`` builds the registry::

        @api.periodic("0 3 * * *", tz="Europe/Brussels", channel="reports")
        def nightly_digest(self):
            ...

    ``cron`` is a 5-field cron expression; give ``interval`` (seconds) instead for
    an exact interval. The other options are those of a ``queue.cron`` row. The
    schedule and options are checked when the row is synced; unknown option names
    are refused here.
    """
    unknown = set(options) - PERIODIC_OPTIONS
    if unknown:
        raise TypeError(
            f"unknown @periodic option(s) {', '.join(sorted(unknown))}; "
            f"accepted: cron, interval, tz, {', '.join(sorted(PERIODIC_OPTIONS))}"
        )
    declared = {"cron": cron, "interval": interval, "tz": tz, **options}

    def decorate(method: Any) -> Any:
        if not callable(method):
            raise TypeError(f"@periodic decorates a model method, got {method!r}")
        method._periodic = declared
        return method

    return decorate
