"""The one settings object of amend.

Every process (worker, gateway, CLI, dev stack) reads the same `Settings`, from
`AMEND_*` environment variables or a `.env` file. Secrets are `SecretStr`, so
they print as `**********` in logs and reprs, and they never go into workflow
inputs: only the worker and gateway hold them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from constitution.capabilities import OutputMode

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# libpq's sslmode values, which asyncpg reads from the URL.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def seconds_or_iso_duration(value: object) -> object:
    """A duration setting as seconds (`21600`, as every `_S` setting is given)
    or ISO 8601 (`PT6H`, as a round spec gives one); pydantic reads the latter
    but not a number written as text, which is what the environment holds."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AMEND_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default=Path(".amend"), description="State of the dev stack.")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "amend-rounds"
    temporal_ui_port: int = 8233
    # -- Temporal Cloud, or any Temporal behind TLS --
    temporal_tls: bool = Field(
        default=False,
        description="TLS to the frontend; implied by a client certificate or an API key.",
    )
    temporal_tls_cert: Path | None = Field(
        default=None, description="mTLS: PEM file of the client certificate (with its key)."
    )
    temporal_tls_key: Path | None = Field(
        default=None, description="mTLS: PEM file of the client certificate's private key."
    )
    temporal_tls_ca: Path | None = Field(
        default=None, description="PEM file of the CA the server's certificate is checked against."
    )
    temporal_tls_server_name: str | None = Field(
        default=None, description="Name the server's certificate must carry, if not the host's."
    )
    temporal_api_key: SecretStr | None = Field(
        default=None, description="Temporal Cloud API key, sent as a bearer token over TLS."
    )
    temporal_ui_public_url: str | None = Field(
        default=None,
        description="Where people reach the Temporal UI (round pages link each round's "
        "workflow there); unset: http://<temporal host>:<temporal_ui_port>.",
    )

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; unset: embedded PostgreSQL under data_dir."
    )
    database_sslmode: str | None = Field(
        default=None,
        pattern="^(" + "|".join(SSL_MODES) + ")$",
        description="libpq sslmode for the ledger; unset: what the URL says (else prefer).",
    )
    database_sslrootcert: Path | None = Field(
        default=None, description="PEM file of the CA for sslmode verify-ca and verify-full."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so a typo is one line at start, not a driver error later.
        if value is not None and not value.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError(
                "must be a PostgreSQL URL such as postgresql://user:password@host:5432/amend"
            )
        return value

    model_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; unset: the scripted stand-in model."
    )
    model_api_key: SecretStr = SecretStr("not-needed")
    model_name: str = "amend-proposer"
    grader_model_name: str | None = Field(default=None, description="Defaults to model_name.")
    model_timeout_s: float = 60.0
    model_concurrency: int = Field(default=4, ge=1)
    dataset_shards_per_worker: int = Field(
        default=2,
        ge=1,
        description="Dataset shards one worker process generates at once; the others wait on "
        "the server for whichever worker has room. Two keep the model busy while one shard "
        "finishes its last examples.",
    )
    model_output_mode: OutputMode = Field(
        default=OutputMode.auto,
        description="How structured answers are asked for: auto (detected per server and "
        "model), json_schema, json_object or tools.",
    )
    model_retry_after_cap_s: float = Field(
        default=120.0,
        ge=1,
        le=86_400,
        description="Longest a rate-limited round waits before asking the model again, "
        "whatever Retry-After says; the wait shows on the round.",
    )

    outage_patience: Annotated[timedelta, BeforeValidator(seconds_or_iso_duration)] = Field(
        default=timedelta(hours=6),
        gt=timedelta(0),
        description="How long a round waits out a model, database or Slack outage before it "
        "fails, for rounds whose spec sets no outage_patience: ISO 8601 (PT6H) or seconds.",
    )

    # -- proposals: evidence, generation, checks, impact --
    evidence_budget_tokens: int = Field(
        default=2000, ge=100, description="Evidence tokens per proposal call (one chunk)."
    )
    evidence_max_chunks: int = Field(
        default=8, ge=1, le=100, description="Proposal calls per round; the rest is left out."
    )
    model_output_retries: int = Field(
        default=1, ge=0, le=5, description="Asks again, with the error, after invalid output."
    )
    duplicate_threshold: float = Field(
        default=90.0, ge=50, le=100, description="rapidfuzz token_sort_ratio for a duplicate."
    )
    eval_prompt_file: str | None = Field(
        default=None,
        description="The evaluation set of a round whose spec names none "
        "(training.eval_prompt_file); unset: the shipped set of a few hundred prompts.",
    )
    reference_model: str = Field(
        default="amend-base",
        min_length=1,
        description="The fixed RLHF-only model every promoted version is compared with on the "
        "trend (charts page, GET /api/trend); rounds evaluate it too when their baseline differs.",
    )
    impact_sample_size: int = Field(
        default=2, ge=0, le=100, description="Held-out prompts per impact preview; 0: off."
    )

    slack_bot_token: SecretStr | None = Field(
        default=None, description="xoxb- token; unset: the Slack Web API stand-in."
    )
    slack_signing_secret: SecretStr = Field(
        default=SecretStr("amend-dev-signing-secret"),
        description="Verifies interaction payloads. The default is for the dev stack only.",
    )
    slack_review_channel: str = "C0AMENDREVIEW"
    slack_api_url: str | None = Field(
        default=None, description="Slack Web API base URL; set by the dev stack for its stand-in."
    )

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    public_url: str | None = Field(
        default=None, description="Where people reach the gateway; links in Slack use it."
    )

    # -- retraining --
    artifacts_dir: Path | None = Field(
        default=None, description="Root of the file:// artifact store; unset: data_dir/artifacts."
    )
    trainer_url: str | None = Field(
        default=None, description="Base URL of a lab's HTTP trainer (the 'http' backend)."
    )
    trainer_secret: SecretStr | None = Field(
        default=None,
        description="Signs the trainer's callbacks; unset: callbacks are refused.",
    )
    # -- Slack review --
    slack_post_interval_s: float = Field(
        default=1.0,
        ge=0,
        # A minute between posts is no Slack limit: most likely milliseconds given as seconds.
        le=60,
        description="Least time between two posts to one channel, for every round of the "
        "worker (Slack allows about one a second); the Slack stand-in enforces the same rate. "
        "0: no pacing; at most 60.",
    )
    slack_rate_limit_retries: int = Field(
        default=2, ge=0, description="429 answers slack_sdk waits out (Retry-After) per call."
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="xapp- token; set: the gateway takes interactions over Socket Mode.",
    )

    stand_in_port_model: int = 8101
    stand_in_port_slack: int = 8102

    # -- operators and dashboards -------------------------------------------------
    api_token: SecretStr | None = Field(
        default=None,
        description="An operator token: the CLI records its holder as the actor of its writes.",
    )
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="json: one object a line, with round and proposal ids.",
    )
    page_refresh_s: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description="How often a live round's page refreshes itself, in seconds.",
    )
    worker_metrics_bind: str | None = Field(
        default=None, description="host:port of the worker's Prometheus endpoint; unset: none."
    )
    worker_health_bind: str | None = Field(
        default=None,
        pattern=r"^.+:\d{1,5}$",
        description="host:port of the worker's /healthz and /readyz; unset: none.",
    )

    # -- stopping --
    worker_graceful_shutdown_s: float = Field(
        default=60.0,
        ge=0,
        description="On SIGTERM the worker stops polling and gives activities in flight this "
        "long to finish before it cancels them (they are then retried elsewhere).",
    )
    gateway_graceful_shutdown_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM the gateway stops accepting and gives accepted requests and "
        "decisions this long to be answered.",
    )

    @model_validator(mode="after")
    def _client_certificate_in_pairs(self) -> Self:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError(
                "set AMEND_TEMPORAL_TLS_CERT and AMEND_TEMPORAL_TLS_KEY together (mTLS needs both)"
            )
        return self

    @property
    def temporal_uses_tls(self) -> bool:
        return bool(self.temporal_tls or self.temporal_tls_cert or self.temporal_api_key)

    @property
    def ledger_url(self) -> str | None:
        """`database_url` with `database_sslmode` and `database_sslrootcert` put
        in its query, which is where asyncpg (and libpq) read them."""
        if self.database_url is None:
            return None
        url = self.database_url.get_secret_value()
        extra = {
            "sslmode": self.database_sslmode,
            "sslrootcert": str(self.database_sslrootcert) if self.database_sslrootcert else None,
        }
        if not any(extra.values()):
            return url
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.update({key: value for key, value in extra.items() if value})
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def temporal_ui_url(self) -> str:
        if self.temporal_ui_public_url:
            return self.temporal_ui_public_url.rstrip("/")
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal_ui_port}"

    @property
    def artifacts_root(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def trainer_callback_url(self) -> str:
        return f"{self.gateway_url}/trainer/callback"

    @property
    def grader_model(self) -> str:
        return self.grader_model_name or self.model_name

    @property
    def uses_stand_in_model(self) -> bool:
        return self.model_base_url is None

    @property
    def uses_stand_in_slack(self) -> bool:
        return self.slack_bot_token is None
