"""The `zapbase` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from zapbase import worker_cli
from zapbase.contract.apidocs import DOCS_FILE, render_api_docs
from zapbase.contract.typegen import TYPES_FILE, generate_types
from zapbase.db import backup as backups
from zapbase.db.embedded import SUPERUSER, bin_path
from zapbase.db.migrate import mask_password, recreate_database
from zapbase.db.scratch import migrated_database
from zapbase.db.target import DATABASE, DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.jobs_cli import jobs_app
from zapbase.knowledge.seed import DEMO_TENANT, ingest_seed_knowledge
from zapbase.knowledge_cli import knowledge_app
from zapbase.report_cli import report
from zapbase.settings import Settings
from zapbase.templates_cli import templates_app

app = typer.Typer(help="Zapbase: WhatsApp customer service with AI, built the Supabase way.",
                  no_args_is_help=True)
db_app = typer.Typer(help="The database: embedded PostgreSQL or DATABASE_URL.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
worker_cli.register(app)  # up, simulator, demo, chat
app.add_typer(knowledge_app, name="knowledge")
app.add_typer(knowledge_app, name="kb", hidden=True)  # the command's first name, for scripts that use it
app.add_typer(jobs_app, name="jobs")
app.add_typer(templates_app, name="templates")
app.command("report")(report)
console = Console()


def _target() -> DatabaseTarget:
    return DatabaseTarget.from_settings(Settings())


def _fail(exc: ZapbaseError) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(1)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (or check DATABASE_URL) and apply the platform stand-in."""
    target = _target()
    try:
        target.start()
    except ZapbaseError as exc:
        raise _fail(exc) from None
    console.print(f"database ready: {mask_password(target.url)}", highlight=False)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    target = _target()
    if target.embedded is None:
        console.print("DATABASE_URL is set: nothing local to stop")
        return
    stopped = target.embedded.stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database is running and how to connect."""
    target = _target()
    if target.embedded is None:
        console.print(f"using DATABASE_URL {mask_password(target.url)}", highlight=False)
        return
    pid = target.embedded.running_pid()
    if pid is None:
        console.print(f"stopped (data in {target.embedded.data_dir}); start: zapbase db start")
        raise typer.Exit(3)
    console.print(f"running (pid {pid}): {target.url}", highlight=False)


@db_app.command("url")
def db_url() -> None:
    """Print the connection URL (role postgres)."""
    typer.echo(_target().url)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations from supabase/migrations in version order."""
    try:
        applied = _target().migrate()
    except ZapbaseError as exc:
        raise _fail(exc) from None
    for migration in applied:
        console.print(f"applied {migration.path.name}")
    console.print(f"{len(applied)} migration(s) applied")


@db_app.command("seed")
def db_seed() -> None:
    """Apply seed/*.sql (idempotent); on DATABASE_URL only reference data, never the demo files."""
    try:
        _target().seed()
    except ZapbaseError as exc:
        raise _fail(exc) from None
    console.print("seed applied")


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Drop the local database and rebuild it: platform, migrations, seed."""
    if not yes:
        typer.confirm("Drop every row of the local database and rebuild it?", abort=True)
    try:
        applied = _target().reset()
    except ZapbaseError as exc:
        raise _fail(exc) from None
    console.print(f"database rebuilt ({len(applied)} migrations, seed applied)")


@db_app.command("psql", context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    url = _target().url
    psql = str(bin_path("psql"))
    sys.stdout.flush()
    os.execv(psql, [psql, url, *ctx.args])  # noqa: S606 - replaces this process with psql


@db_app.command("backup-key")
def db_backup_key() -> None:
    """Print a new backup key (set it as ZAPBASE_BACKUP_KEY and keep a copy off the machine)."""
    typer.echo(backups.new_key())


def _backup_key(settings: Settings) -> bytes:
    if settings.zapbase_backup_key is None:
        raise backups.BackupError("set ZAPBASE_BACKUP_KEY first (make one with `zapbase db backup-key`)")
    return backups.parse_key(settings.zapbase_backup_key.get_secret_value())


@db_app.command("backup")
def db_backup(
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to write (ZAPBASE_BACKUP_DIR).")]
    = None,
) -> None:
    """Write an encrypted pg_dump of the database (on Supabase use the platform's backups)."""
    target = _target()
    try:
        key = _backup_key(target.settings)
        if target.embedded is not None:
            target.start()
        path = backups.backup(target.url, directory or target.settings.zapbase_backup_dir, key)
    except ZapbaseError as exc:
        raise _fail(exc) from None
    console.print(f"backup written: {path} ({path.stat().st_size} bytes, AES-256-GCM)", highlight=False)


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="A file written by `zapbase db backup`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Replace the database with a backup: the embedded one is rebuilt from it; a
    self-hosted DATABASE_URL gets what the backup holds dropped and restored."""
    target = _target()
    if not yes:
        typer.confirm("Replace the database with this backup?", abort=True)
    try:
        key = _backup_key(target.settings)
        if target.embedded is None:
            if "supabase.co" in target.url or "supabase.com" in target.url:
                raise backups.BackupError("a Supabase project is restored from the platform's backups "
                                          "(Dashboard > Database > Backups), not by zapbase")
            backups.restore(path, target.url, key, clean=True)
        else:
            target.embedded.start()
            with path.open("rb") as source, open(os.devnull, "wb") as sink:
                backups.decrypt(source, sink, key)  # right key, intact file: before anything is dropped
            recreate_database(target.embedded.url(SUPERUSER, "template1"), DATABASE)
            backups.restore(path, target.embedded.url(SUPERUSER, DATABASE), key, clean=False)
    except (ZapbaseError, OSError) as exc:
        raise _fail(ZapbaseError(str(exc))) from None
    console.print(f"restored {path}", highlight=False)


@app.command("setup")
def setup() -> None:
    """Start the database, apply migrations, the seed and the demo tenant's knowledge base."""
    settings = Settings()
    target = DatabaseTarget.from_settings(settings)
    try:
        applied = target.setup()
        knowledge = ingest_seed_knowledge(target.url, settings.zapbase_project_dir)
    except ZapbaseError as exc:
        raise _fail(exc) from None
    console.print(f"{len(applied)} migration(s) applied, seed applied"
                  + ("" if target.demo else " (reference data only: no demo tenant on DATABASE_URL)"))
    if knowledge is not None:
        console.print(f"knowledge base of {DEMO_TENANT}: {len(knowledge)} file(s) ingested or unchanged")
    console.print(f"database: {mask_password(target.url)}", highlight=False)


@app.command("types")
def types() -> None:
    """Write supabase/types/database.ts (supabase-js `Database`) from a fresh migrated database."""
    settings = Settings()
    try:
        with migrated_database(settings) as url:
            text = generate_types(url, settings.zapbase_project_dir)
    except ZapbaseError as exc:
        raise _fail(exc) from None
    _write(settings, TYPES_FILE, text)


@app.command("docs")
def docs() -> None:
    """Write docs/api.md (tables, RPCs, errors, Realtime) from a fresh migrated database."""
    settings = Settings()
    try:
        with migrated_database(settings) as url:
            text = render_api_docs(url)
    except ZapbaseError as exc:
        raise _fail(exc) from None
    _write(settings, DOCS_FILE, text)


def _write(settings: Settings, relative: Path, text: str) -> None:
    path = settings.zapbase_project_dir / relative
    unchanged = path.is_file() and path.read_text(encoding="utf-8") == text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    console.print(f"{relative}: {'unchanged' if unchanged else 'written'}", highlight=False)


if __name__ == "__main__":
    app()
