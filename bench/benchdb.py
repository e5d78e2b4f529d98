"""The benches' own PostgreSQL databases: each run starts from a new, empty one."""

import sys
from urllib.parse import unquote, urlsplit


def fresh_database(url):
    """Drop and create the database of ``url``.

    Every run starts from empty tables: rows and dead tuples that an earlier run left behind (PostgreSQL's
    autovacuum may be off, as it is on CI's machine) slow the INSERTs down run after run, and two runs
    would not measure the same thing. Only a database whose name says it is a bench's is ever dropped.
    """
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"a bench drops and recreates its database; {name!r} does not look like a bench's (no 'bench')")
    with psycopg.connect(
        host=unquote(parts.hostname) if parts.hostname else "127.0.0.1",  # %2F...: a Unix socket directory
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
