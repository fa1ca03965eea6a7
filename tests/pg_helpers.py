"""A fresh PostgreSQL database per test on the throwaway server ``.ci/run`` starts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it afterwards (skips without a server)."""
    admin_url = os.environ.get("TZB_POSTGRES_URL")
    if not admin_url:
        pytest.skip("TZB_POSTGRES_URL is not set; .ci/run starts a throwaway PostgreSQL server and sets it")
    import sqlalchemy

    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    db = f"tzb_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    try:
        yield sqlalchemy.engine.make_url(admin_url).set(database=db).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
