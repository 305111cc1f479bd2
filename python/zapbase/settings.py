"""Settings: one typed object, built by the CLI or the app factory and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: One Graph API call: connecting, then waiting for a pooled connection, writing and reading,
#: each of the three up to GRAPH_TIMEOUT_S. The send lease outlasts all of it.
GRAPH_CONNECT_TIMEOUT_S = 5.0
GRAPH_TIMEOUT_S = 15.0
GRAPH_CALL_MAX_S = GRAPH_CONNECT_TIMEOUT_S + 3 * GRAPH_TIMEOUT_S
#: The longest single provider call a bot reply waits on (speech synthesis; chat,
#: transcription and embeddings give up after 30 s). The process lease outlasts it.
PROVIDER_TIMEOUT_S = 60.0


def find_project_dir(start: Path | None = None) -> Path:
    """The checkout holding `supabase/config.toml` (cwd or a parent), else the package's own."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "supabase" / "config.toml").is_file():
            return candidate
    return Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob of Zapbase; each field reads the environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="Use this PostgreSQL (e.g. a Supabase project) instead of the embedded one.",
    )
    zapbase_home: Path = Field(
        default=Path(".zapbase"), description="Local data dir of the embedded PostgreSQL."
    )
    zapbase_db_port: int = Field(
        default=54322, description="TCP port of the embedded PostgreSQL (127.0.0.1 only)."
    )
    zapbase_project_dir: Path = Field(
        default_factory=find_project_dir,
        description="Checkout with supabase/migrations, sql/platform and seed.",
    )

    # -- worker ------------------------------------------------------------------------
    zapbase_http_host: str = Field(default="127.0.0.1", description="Address the worker's HTTP API binds.")
    zapbase_http_port: int = Field(default=8080, description="Port of the worker's HTTP API.")
    zapbase_db_pool_size: int = Field(
        default=20,
        description="Connections per worker process (a message in processing borrows one for each read"
        " or write, none while a provider answers).",
    )
    whatsapp_app_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="The platform's Meta app secrets (JSON list, several while rotating): "
        "/webhooks/whatsapp.",
    )
    whatsapp_verify_token: SecretStr | None = Field(
        default=None, description="The platform's Meta app verify token (handshake on /webhooks/whatsapp)."
    )
    graph_api_base_url: str = Field(
        default="https://graph.facebook.com", description="Graph API base URL (the simulator's locally)."
    )
    graph_api_version: str = Field(default="v25.0", description="Graph API version used for sends.")
    zapbase_worker_id: str | None = Field(
        default=None, description="Name of this replica in leases (leased_by); default host:pid."
    )
    zapbase_poll_interval_s: float = Field(
        default=2.0, gt=0, description="Queue poll when no NOTIFY arrives (retries become due silently)."
    )
    zapbase_send_lease_s: int = Field(
        default=60, ge=10, description="Outbound lease; must exceed a Graph call's timeouts (50 s)."
    )
    zapbase_send_concurrency: int = Field(
        default=16, ge=1, description="Outbound rows claimed and sent at once per replica."
    )
    zapbase_process_lease_s: int = Field(
        default=120,
        ge=10,
        description="Inbound lease per message; must exceed a provider call's timeout (60 s).",
    )
    zapbase_process_concurrency: int = Field(
        default=8, ge=1, description="Inbound messages claimed and handled at once per replica."
    )
    zapbase_shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, time the loops get to finish in-flight rows."
    )
    zapbase_scheduler: bool = Field(
        default=True,
        description="Tick private.run_due_jobs() from the worker (one leader across replicas); needed"
        " without pg_cron, harmless beside it.",
    )
    zapbase_scheduler_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between the scheduler leader's ticks (jobs are due by the minute).",
    )
    zapbase_webhook_concurrency: int = Field(
        default=8, ge=1, description="Webhook deliveries claimed and sent at once per replica."
    )
    zapbase_webhook_lease_s: int = Field(
        default=60, ge=20, description="Webhook delivery lease; must exceed the deliverer's 15 s timeout."
    )
    zapbase_webhooks_local_mode: bool = Field(
        default=False,
        description="Let webhooks and flows' http blocks go to http:// and private / loopback addresses"
        " (local development only).",
    )
    zapbase_smtp_host: str | None = Field(
        default=None,
        description="SMTP server of alert e-mails (to tenants.notification_emails); unset: this worker sends"
        " none.",
    )
    zapbase_smtp_port: int = Field(default=587, description="SMTP port (587 STARTTLS, 465 TLS, 25 a relay).")
    zapbase_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (required, not opportunistic), tls (implicit), none."
    )
    zapbase_smtp_username: str | None = Field(default=None, description="SMTP login, if any.")
    zapbase_smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    zapbase_smtp_from: str = Field(
        default="Zapbase <alertas@zapbase.local>", description="From: of alert e-mails."
    )
    zapbase_simulator_port: int = Field(
        default=8787, description="Port of `zapbase simulator` (point GRAPH_API_BASE_URL at it)."
    )

    # -- media storage ---------------------------------------------------------------------
    zapbase_media_dir: Path = Field(
        default=Path(".zapbase/media"), description="Local directory of inbound media (no Supabase)."
    )
    zapbase_media_bucket: str = Field(
        default="whatsapp-media", description="Storage bucket (and local subdirectory) of inbound media."
    )
    supabase_url: str | None = Field(
        default=None, description="Supabase project URL; with the service key, media go to Supabase Storage."
    )
    supabase_service_role_key: SecretStr | None = Field(
        default=None, description="Service role key for Supabase Storage uploads."
    )

    # -- backups of the embedded or self-hosted database (Supabase has the platform's) ------
    zapbase_backup_dir: Path = Field(
        default=Path(".zapbase/backups"), description="Directory `zapbase db backup` writes to."
    )
    zapbase_backup_key: SecretStr | None = Field(
        default=None,
        description="Backup key: 32 random bytes in URL-safe base64 (`zapbase db backup-key` makes one).",
    )

    # -- AI providers (no key: that provider is left out; with none, the offline answerer) --
    anthropic_api_key: SecretStr | None = Field(default=None, description="Anthropic API key (replies).")
    anthropic_base_url: str | None = Field(
        default=None, description="Anthropic API base URL (a proxy or a stand-in); default: Anthropic's."
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        description="OpenAI-compatible API key: replies, transcription of voice notes, TTS, embeddings.",
    )
    openai_base_url: str = Field(
        default="https://api.openai.com", description="OpenAI-compatible API base URL, without /v1."
    )
    openai_transcription_model: str = Field(
        default="whisper-1",
        description="Transcription model; openai/<model> must be in ai_models with its price per minute.",
    )
    openai_embedding_model: str = Field(
        default="text-embedding-3-small",
        description="Embeddings model (384 dimensions requested); openai/<model> must be in ai_models.",
    )
    zapbase_embedder: str | None = Field(
        default=None,
        description="Embedder of `zapbase knowledge` (local:hashing-v1, local:all-MiniLM-L6-v2,"
        " openai:<model>);"
        " default: OpenAI when a key is set, else the best local one.",
    )
    zapbase_summary_after: int = Field(
        default=10,
        ge=1,
        description="Turns fallen out of a conversation's AI memory before the rolling summary is rewritten.",
    )

    @model_validator(mode="after")
    def _leases_outlast_calls(self) -> Self:
        """Refuse leases that would let a second replica take a row while the first one's
        call can still succeed."""
        if self.zapbase_send_lease_s <= GRAPH_CALL_MAX_S:
            raise ValueError(
                f"ZAPBASE_SEND_LEASE_S={self.zapbase_send_lease_s} must exceed {GRAPH_CALL_MAX_S:g} s, the"
                " longest a Graph API call can take: a shorter lease lets another replica send the same"
                " message again while the first send is still in flight"
            )
        if self.zapbase_process_lease_s <= PROVIDER_TIMEOUT_S:
            raise ValueError(
                f"ZAPBASE_PROCESS_LEASE_S={self.zapbase_process_lease_s} must exceed"
                f" {PROVIDER_TIMEOUT_S:g} s, the longest an AI provider call can take: a shorter lease"
                " hands a message to another replica while its reply is still being written, and the"
                " first reply is thrown away"
            )
        return self

    @property
    def migrations_dir(self) -> Path:
        return self.zapbase_project_dir / "supabase" / "migrations"

    @property
    def platform_dir(self) -> Path:
        return self.zapbase_project_dir / "sql" / "platform"

    @property
    def seed_dir(self) -> Path:
        return self.zapbase_project_dir / "seed"
