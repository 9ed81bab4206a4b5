"""Schema versions in one SQLite file, each table's owner migrating its own tables.

The store owns ``inspections`` (its version is ``PRAGMA user_version``, as it has been since v1, so an
older program refuses a newer file), the MQTT outbox owns ``outbox`` (its version is a row of the
``schema_owners`` table). Each migration runs in a transaction, after a copy of the file is taken
when it holds data of an older version (``<db>.bak-v<old>`` for the store, ``<db>.bak-<owner>-v<old>``
for the others), so a failed upgrade loses nothing. A file written by a newer program is refused with
:class:`~edge_inspector.errors.StartupError` (exit status 3), never touched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlite_utils
import structlog

from edge_inspector.errors import StartupError

log = structlog.get_logger(__name__)

USER_VERSION = "inspections"  # the owner whose version is PRAGMA user_version
OWNERS = "schema_owners"

Migration = Callable[[sqlite_utils.Database], None]


def version_of(db: sqlite_utils.Database, owner: str) -> int:
    if owner == USER_VERSION:
        return db.execute("PRAGMA user_version").fetchone()[0]
    if OWNERS not in db.table_names():
        return 0
    row = db.execute(f"SELECT version FROM {OWNERS} WHERE owner = ?", [owner]).fetchone()
    return row[0] if row else 0


def _set_version(db: sqlite_utils.Database, owner: str, version: int) -> None:
    if owner == USER_VERSION:
        db.conn.execute(f"PRAGMA user_version={int(version)}")
        return
    db.conn.execute(f"CREATE TABLE IF NOT EXISTS {OWNERS} (owner TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    db.conn.execute(f"INSERT INTO {OWNERS} (owner, version) VALUES (?, ?) "
                    "ON CONFLICT(owner) DO UPDATE SET version = excluded.version", (owner, version))


def migrate(db: sqlite_utils.Database, path: Path, owner: str, migrations: Sequence[Migration]) -> int:
    """Bring ``owner``'s tables to ``len(migrations)``. Returns that version."""
    target = len(migrations)
    version = version_of(db, owner)
    if version > target:
        raise StartupError(f"{path}: the {owner} schema is version {version}, newer than this "
                           f"program's ({target}): it was written by a newer edge-inspector; install "
                           "that version (the file was not touched)")
    if 0 < version < target:
        name = f"{path.name}.bak-v{version}" if owner == USER_VERSION else f"{path.name}.bak-{owner}-v{version}"
        backup = path.with_name(name)
        dest = sqlite3.connect(str(backup))
        try:
            db.conn.backup(dest)
        finally:
            dest.close()
        log.info("store_backup", path=str(backup), owner=owner, version=version)
    for v in range(version, target):
        conn = db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[v](db)
            _set_version(db, owner, v + 1)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("store_migrated", owner=owner, to_version=v + 1)
    return target
