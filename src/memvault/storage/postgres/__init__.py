"""The Postgres backend: ``PostgresStore`` (the data: a ``DataStore``) and ``PostgresKeyStore``
(the wrapped data keys: a ``KeyStore``), each in a schema of its own, possibly in two databases.

Needs the ``postgres`` extra (psycopg 3 and psycopg-pool)."""

from memvault.storage.postgres.keys import PostgresKeyStore
from memvault.storage.postgres.store import PostgresStore

__all__ = ["PostgresKeyStore", "PostgresStore"]
