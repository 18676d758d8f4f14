"""What every recordset is, for the modules the models module itself imports.

:class:`~job_worker.orm.models.BaseModel` derives from :class:`Recordset`. Fields
and domains are given recordsets as values (``partner_id=partner``, ``("id",
"in", partners)``) and recognise them with ``isinstance(value, Recordset)``
without importing :mod:`job_worker.orm.models`, which imports them.
"""

from __future__ import annotations


class Recordset:
    """A model's records: ``_name`` is the model, ``_ids`` the record ids in order."""

    __slots__ = ()

    _name: str
    _ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self._ids)
