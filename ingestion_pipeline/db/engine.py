"""Engines for the configured PostgreSQL, or an embedded one, migrated on first use."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "ingestion"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 7_110_420_001

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

# duplicate_database, and the unique index of pg_database when two CREATEs race.
DUPLICATE_DATABASE = ("42P04", "23505")


def normalize_url(url: str) -> str:
    """Accept bare postgres:// and postgresql:// URLs; SQLAlchemy 2.1 maps those to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got {parsed.drivername!r}")
    return parsed.render_as_string(hide_password=False)


def embedded_url(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir` and return a URL to `database`."""
    import pgserver

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "postmaster.pid").exists():
        # Stopped since this process started it (`make db-stop`): pgserver would hand back its
        # handle on the stopped server instead of starting it again.
        pgserver.PostgresServer._instances.pop(pgdata, None)
    # cleanup_mode=None leaves the server running for the CLI, `dagster dev` and tests to share.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    socket_dir = make_url(server.get_uri()).query["host"]
    admin = sa.create_engine(
        f"postgresql+psycopg2://postgres@/postgres?host={socket_dir}", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            )
            if not exists:
                try:
                    conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
                except sa.exc.DBAPIError as exc:
                    # Two processes starting at once (`make serve` starts a worker beside
                    # it): the other one created it first.
                    if getattr(exc.orig, "pgcode", None) not in DUPLICATE_DATABASE:
                        raise
    finally:
        admin.dispose()
    return f"postgresql+psycopg2://postgres@/{database}?host={socket_dir}"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe when several processes start at once."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def get_engine(url: str) -> Engine:
    """One engine per URL per process, migrated the first time it is asked for."""
    url = normalize_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            migrate(engine)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL under `data_dir` if it runs; True if it was stopped."""
    import os
    import subprocess

    from pgserver import pg_ctl

    pgdata = data_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs it as this user under root
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True
