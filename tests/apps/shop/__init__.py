"""A small shop whose schema has a history: ``MIGRATIONS`` brings a database of an
earlier release (version 1) up to date.

Version 1 had ``shop.product.code`` (indexed) and neither ``active``,
``category`` nor ``label``; version 2 renamed ``code`` to ``sku`` and added
``active`` and ``category``; version 3 added ``label``, filled from the name.
"""

from job_worker import Migration

from . import models  # noqa: F401


def _rename_code_to_sku(cr):
    cr.execute('ALTER TABLE "shop_product" RENAME COLUMN "code" TO "sku"')
    # the schema sync creates the index under its new name
    cr.execute('DROP INDEX "shop_product_code_index"')


def _fill_labels(env):
    for product in env["shop.product"].search([("label", "=", False)]):
        product.label = f"{product.name.upper()} ({product.sku})"


MIGRATIONS = [
    Migration(1, "products and orders"),
    Migration(2, "code renamed to sku; active and category", pre=_rename_code_to_sku),
    Migration(3, "label", post=_fill_labels),
]
