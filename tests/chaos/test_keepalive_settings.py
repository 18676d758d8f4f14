"""Every PostgreSQL connection of the product ends a silent peer's session in bounded
time: keepalives and ``tcp_user_timeout`` on both ends (see ``test_partition.py`` for
what they buy)."""

from __future__ import annotations

import pytest

from job_worker import Registry
from job_worker.db.jobstore import for_backend
from job_worker.db.postgres import KEEPALIVE_SETTINGS, connection_options

SERVER_SETTINGS = {
    "tcp_keepalives_idle": str(KEEPALIVE_SETTINGS["keepalives_idle"]),
    "tcp_keepalives_interval": str(KEEPALIVE_SETTINGS["keepalives_interval"]),
    "tcp_keepalives_count": str(KEEPALIVE_SETTINGS["keepalives_count"]),
    "tcp_user_timeout": str(KEEPALIVE_SETTINGS["tcp_user_timeout"]),
}


def _server_side(cnx) -> dict[str, str]:
    return {name: cnx.execute(f"SHOW {name}").fetchone()[0] for name in SERVER_SETTINGS}


def _client_side(cnx) -> dict[str, str]:
    return {
        option.keyword.decode(): (option.val or b"").decode()
        for option in cnx.pgconn.info
        if option.keyword.decode() in ("keepalives", *KEEPALIVE_SETTINGS)
    }


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pool_sessions_and_listener_carry_keepalives_on_both_ends(db_url):
    registry = Registry(db_url, ["workerapp"])
    store = for_backend(registry.backend)
    session = store.session(role="supervisor")
    listener = store.listener()
    try:
        with registry.cursor() as cr:
            pooled = cr._cnx
            assert _server_side(pooled) == SERVER_SETTINGS
            cr.execute("SELECT current_schema()")  # the URL's own options are kept
            assert cr.fetchone()[0].startswith("t_")
        cnx = session._connect()
        listener.open()
        for each in (pooled, cnx, listener._cnx):
            assert _server_side(each) == SERVER_SETTINGS
            assert _client_side(each) == {
                "keepalives": "1",
                **{key: str(value) for key, value in KEEPALIVE_SETTINGS.items()},
            }
    finally:
        listener.close()
        session.close()
        registry.close()


def test_the_urls_own_settings_win():
    url = "postgresql://db/app?keepalives_idle=60&options=-c%20tcp_keepalives_idle%3D60"
    options = connection_options(url)
    assert "keepalives_idle" not in options  # libpq takes the URL's
    assert options["tcp_user_timeout"] == KEEPALIVE_SETTINGS["tcp_user_timeout"]
    # the URL's options come last: the last -c of a setting counts
    assert options["options"].endswith("-c tcp_keepalives_idle=60")
    idle = KEEPALIVE_SETTINGS["keepalives_idle"]
    assert options["options"].startswith(f"-c tcp_keepalives_idle={idle} ")
