"""Migrations: a database of an earlier release, upgraded, equals a fresh one.

The ``shop`` test application is at version 3 (see ``tests/apps/shop``). Its
release 1 is rebuilt here with raw SQL, as that release left it; loading the
current application must bring it to the schema a fresh database gets, with
the data intact.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from urllib.parse import quote

import psycopg
import pytest
import shop

from job_worker import Migration, Registry


@pytest.fixture
def fresh_url(db_url, tmp_path, request):
    """A second empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite:"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    database = request.getfixturevalue("pg_database")
    schema = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in database else "?"
    yield f"{database}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(database, autocommit=True) as cnx:
        cnx.execute(f'DROP SCHEMA "{schema}" CASCADE')


def build_release_1(make_registry, url):
    """The database as release 1 of shop left it (the built-in modules as they are now)."""
    builtin = make_registry(url=url)
    types = builtin.backend.column_type
    created = datetime(2023, 5, 1, 12, 0)
    with builtin.cursor() as cr:
        cr.execute(
            f"""CREATE TABLE "shop_product" (
                   "id" {types("id")}, "code" VARCHAR NOT NULL, "name" VARCHAR NOT NULL,
                   "price" {types("float")}, "create_date" TIMESTAMP, "write_date" TIMESTAMP)"""
        )
        cr.execute('CREATE INDEX "shop_product_code_index" ON "shop_product" ("code")')
        cr.execute(
            f"""CREATE TABLE "shop_order" (
                   "id" {types("id")},
                   "product_id" INTEGER NOT NULL
                       REFERENCES "shop_product"(id) ON DELETE CASCADE,
                   "quantity" INTEGER, "create_date" TIMESTAMP, "write_date" TIMESTAMP)"""
        )
        cr.executemany(
            "INSERT INTO shop_product (code, name, price, create_date, write_date)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                ("TEA-1", "green tea", 4.5, created, created),
                ("CUP-2", "cup", 9.0, created, created),
            ],
        )
        cr.execute("SELECT id FROM shop_product WHERE code = %s", ["CUP-2"])
        cup = cr.fetchone()[0]
        cr.execute("INSERT INTO shop_order (product_id, quantity) VALUES (%s, %s)", (cup, 3))
        cr.execute(
            "INSERT INTO job_worker_module (name, version, installed_at) VALUES (%s, %s, %s)",
            ("shop", 1, created),
        )
        cr.execute(
            "INSERT INTO job_worker_migration (module, version, description, applied_at, fresh)"
            " VALUES (%s, %s, %s, %s, %s)",
            ("shop", 1, "products and orders", created, True),
        )
    builtin.close()


def schema_of(registry):
    with registry.cursor() as cr:
        return registry.backend.describe_schema(cr)


def migrations_of(registry):
    with registry.cursor() as cr:
        cr.execute("SELECT version FROM job_worker_module WHERE name = %s", ["shop"])
        version = cr.fetchone()[0]
        cr.execute(
            "SELECT version, fresh FROM job_worker_migration WHERE module = %s ORDER BY version",
            ["shop"],
        )
        return version, [(v, bool(fresh)) for v, fresh in cr.fetchall()]


def test_an_upgraded_database_has_the_schema_of_a_fresh_one(make_registry, db_url, fresh_url):
    build_release_1(make_registry, db_url)
    upgraded = make_registry(["shop"])
    fresh = make_registry(["shop"], url=fresh_url)
    upgraded_schema, fresh_schema = schema_of(upgraded), schema_of(fresh)
    assert upgraded_schema.keys() == fresh_schema.keys()
    for table, described in fresh_schema.items():
        assert upgraded_schema[table] == described, table
    assert "shop_product_sku_index" in upgraded_schema["shop_product"].indexes
    assert "shop_product_code_index" not in upgraded_schema["shop_product"].indexes
    assert upgraded_schema["shop_product"].columns["category"][1]  # NOT NULL, filled


def test_an_upgrade_keeps_the_data_and_runs_each_step_once(make_registry, db_url):
    build_release_1(make_registry, db_url)
    registry = make_registry(["shop"])
    with registry.environment() as env:
        products = env["shop.product"].search([])
        assert products.mapped("sku") == ["CUP-2", "TEA-1"]
        assert products.mapped("name") == ["cup", "green tea"]
        assert products.mapped("price") == [9.0, 4.5]
        assert products.mapped("active") == [True, True]  # constant default filled
        assert products.mapped("category") == ["misc", "misc"]
        assert products.mapped("label") == ["CUP (CUP-2)", "GREEN TEA (TEA-1)"]  # post step
        order = env["shop.order"].search([])
        assert order.product_id.sku == "CUP-2" and order.quantity == 3
        products[0].label = "edited by hand"
    assert migrations_of(registry) == (3, [(1, True), (2, False), (3, False)])
    assert registry.schema_changes.migrated == [
        "shop 2: code renamed to sku; active and category",
        "shop 3: label",
    ]
    assert not registry.schema_changes.created
    again = make_registry(["shop"])  # nothing left to do: steps do not run twice
    assert migrations_of(again) == (3, [(1, True), (2, False), (3, False)])
    assert not again.schema_changes.changed
    with again.environment() as env:
        assert env["shop.product"].search([("sku", "=", "CUP-2")]).label == "edited by hand"


def test_a_fresh_database_records_every_migration_as_applied(make_registry):
    registry = make_registry(["shop"])
    assert migrations_of(registry) == (3, [(1, True), (2, True), (3, True)])
    assert registry.schema_changes.created and not registry.schema_changes.migrated


def test_a_failing_migration_leaves_the_database_as_it_was(make_registry, db_url, monkeypatch):
    build_release_1(make_registry, db_url)
    before = schema_of(make_registry())

    def broken(env):
        raise RuntimeError("step 3 failed")

    monkeypatch.setattr(shop, "MIGRATIONS", [*shop.MIGRATIONS[:2], Migration(3, "x", post=broken)])
    with pytest.raises(RuntimeError, match="step 3 failed"):
        Registry(db_url, ["shop"])
    after = make_registry()
    assert schema_of(after) == before
    assert "code" in before["shop_product"].columns
    assert migrations_of(after) == (1, [(1, True)])


@pytest.mark.parametrize("versions", [[2, 1], [1, 1], [0, 1]])
def test_migrations_must_have_increasing_versions_from_1(make_registry, monkeypatch, versions):
    monkeypatch.setattr(shop, "MIGRATIONS", [Migration(v, f"step {v}") for v in versions])
    with pytest.raises(ValueError, match="increasing versions"):
        make_registry(["shop"])


def test_two_registries_built_at_once_on_one_database_both_succeed(make_registry, db_url):
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    built: list[Registry] = []

    def build():
        start.wait(timeout=10)
        try:
            built.append(Registry(db_url, ["shop"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert len(built) == 2
        with built[0].cursor() as cr:
            cr.execute("SELECT name, COUNT(*) FROM job_worker_module GROUP BY name")
            assert all(count == 1 for _name, count in cr.fetchall())
            cr.execute("SELECT COUNT(*) FROM res_company")
            assert cr.fetchone()[0] == 1  # the initial data was created once
    finally:
        for registry in built:
            registry.close()
