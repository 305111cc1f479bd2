"""Encrypted backups of the embedded or a self-hosted database (on Supabase the platform's
daily backups and point-in-time recovery do this job).

`pg_dump --format=custom` of the embedded server's own binaries is streamed through
AES-256-GCM into `<dir>/zapbase-<UTC time>.dump.enc`; nothing unencrypted touches the disk
on the way out. File format, so that a chunk can be neither altered, reordered, dropped
nor cut off without the restore noticing:

    b"ZBK1"  then chunks:  length (4 bytes, big-endian) | nonce (12) | ciphertext + tag
    associated data of chunk i: b"ZBK1" | i (8 bytes) | final flag (1 byte)

Restore decrypts the whole file first (every tag checked) into a private temporary file,
then runs pg_restore.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zapbase.db.embedded import bin_path
from zapbase.errors import DatabaseError

__all__ = ["BackupError", "backup", "decrypt", "encrypt", "new_key", "parse_key", "restore"]

MAGIC = b"ZBK1"
CHUNK = 1 << 20


class BackupError(DatabaseError):
    """A backup could not be written, read or restored."""


def new_key() -> str:
    """A fresh backup key (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise BackupError("ZAPBASE_BACKUP_KEY must be 32 bytes in URL-safe base64: make one with "
                          "`zapbase db backup-key`")
    return key


def _aad(index: int, final: bool) -> bytes:
    return MAGIC + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _chunks(source: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The source in CHUNK pieces, each with whether it is the last (an empty source: one empty)."""
    current = source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        yield current, not following
        if not following:
            return
        current = following


def encrypt(source: IO[bytes], target: IO[bytes], key: bytes) -> None:
    aead = AESGCM(key)
    target.write(MAGIC)
    for index, (plain, final) in enumerate(_chunks(source)):
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, plain, _aad(index, final))
        target.write(len(sealed).to_bytes(4, "big") + nonce + sealed)


def decrypt(source: IO[bytes], target: IO[bytes], key: bytes) -> None:
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupError("not a Zapbase backup (the file does not start with ZBK1)")
    aead = AESGCM(key)
    index, finished = 0, False
    while header := source.read(4):
        if finished or len(header) < 4:
            raise BackupError("the backup has data after its last chunk: it was altered")
        size = int.from_bytes(header, "big")
        nonce, sealed = source.read(12), source.read(size)
        if len(nonce) < 12 or len(sealed) < size:
            raise BackupError("the backup is cut short: it was truncated")
        for final in (False, True):
            try:
                target.write(aead.decrypt(nonce, sealed, _aad(index, final)))
            except InvalidTag:
                continue
            finished = final
            break
        else:
            raise BackupError("the backup does not decrypt with this key "
                              "(wrong ZAPBASE_BACKUP_KEY, or the file was altered)")
        index += 1
    if not finished:
        raise BackupError("the backup is cut short: its last chunk is missing")


def backup(url: str, directory: Path, key: bytes, *, now: datetime | None = None) -> Path:
    """pg_dump the database at `url` into a new encrypted file in `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"zapbase-{stamp}.dump.enc"
    partial = path.with_name(f".{path.name}.part")
    dump = subprocess.Popen(
        [str(bin_path("pg_dump")), "--format=custom", "--dbname", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert dump.stdout is not None and dump.stderr is not None
    try:
        with partial.open("wb") as target:
            encrypt(dump.stdout, target, key)
        error = dump.stderr.read().decode(errors="replace")
        if dump.wait() != 0:
            raise BackupError(f"pg_dump failed: {error.strip()}")
    except BaseException:
        dump.kill()
        dump.wait()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


def restore(path: Path, url: str, key: bytes, *, clean: bool) -> None:
    """Decrypt `path` and pg_restore it into the database at `url`; `clean` drops what the
    backup holds first (a database that is not empty)."""
    if not path.is_file():
        raise BackupError(f"no backup file {path}")
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".restore-", suffix=".dump") as plain:
        with path.open("rb") as source:
            decrypt(source, plain, key)  # every tag checked before anything is restored
        plain.flush()
        args = [str(bin_path("pg_restore")), "--exit-on-error", "--single-transaction", "--dbname", url]
        if clean:
            args += ["--clean", "--if-exists"]
        result = subprocess.run([*args, plain.name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
