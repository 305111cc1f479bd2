"""Which database Zapbase uses: DATABASE_URL when set, else the embedded server."""

from __future__ import annotations

from dataclasses import dataclass

from zapbase.db.embedded import SUPERUSER, EmbeddedPostgres
from zapbase.db.migrate import (
    Migration,
    apply_platform,
    apply_seed,
    connect,
    migrate,
    recreate_database,
)
from zapbase.errors import DatabaseError
from zapbase.settings import Settings

DATABASE = "postgres"


@dataclass(frozen=True)
class DatabaseTarget:
    settings: Settings
    embedded: EmbeddedPostgres | None

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseTarget:
        if settings.database_url:
            return cls(settings, None)
        data_dir = settings.zapbase_home.resolve() / "db"
        return cls(settings, EmbeddedPostgres(data_dir, settings.zapbase_db_port))

    @property
    def url(self) -> str:
        """Connection URL as role postgres (the role migrations and the worker use)."""
        if self.embedded is None:
            assert self.settings.database_url is not None
            return self.settings.database_url
        return self.embedded.url("postgres", DATABASE)

    def start(self) -> None:
        """Make the database reachable; on the embedded server, apply the platform stand-in."""
        if self.embedded is None:
            connect(self.url).close()
            return
        self.embedded.start()
        apply_platform(self.embedded.url(SUPERUSER, DATABASE), self.settings.platform_dir)

    def migrate(self) -> list[Migration]:
        return migrate(self.url, self.settings.migrations_dir)

    @property
    def demo(self) -> bool:
        """The demo tenant and its knowledge base belong to the embedded database only."""
        return self.embedded is not None

    def seed(self) -> None:
        apply_seed(self.url, self.settings.seed_dir, demo=self.demo)

    def setup(self) -> list[Migration]:
        """Start, migrate and seed: everything `make demo` and `zapbase up` need."""
        self.start()
        applied = self.migrate()
        self.seed()
        return applied

    def reset(self) -> list[Migration]:
        """Rebuild the embedded database from scratch: platform, migrations, seed."""
        if self.embedded is None:
            raise DatabaseError(
                "refusing to reset a database given by DATABASE_URL; on Supabase use "
                "`supabase db reset --linked` if you really mean it"
            )
        self.embedded.start()
        recreate_database(self.embedded.url(SUPERUSER, "template1"), DATABASE)
        return self.setup()
