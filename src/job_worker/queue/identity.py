"""Identity keys: a job whose key equals an active job's key is not created."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .serialization import canonical, encode

if TYPE_CHECKING:
    from .delayable import Delayable


def identity_exact(delayable: Delayable) -> str:
    """SHA-1 of the model, method, sorted record ids, args and kwargs, in a canonical,
    order-independent encoding: two calls with equal arguments give the same key."""
    payload = canonical(
        [
            delayable.model_name,
            delayable.method_name,
            sorted(delayable.recordset._ids),
            # checked when the call was captured: no need to measure them again
            encode(list(delayable.args), "args", max_chars=None),
            encode(dict(delayable.kwargs), "kwargs", max_chars=None),
        ]
    )
    return hashlib.sha1(payload.encode()).hexdigest()
