"""The one settings object of amend.

Every process (worker, gateway, CLI, dev stack) reads the same `Settings`, from
`AMEND_*` environment variables or a `.env` file. Secrets are `SecretStr`, so
they print as `**********` in logs and reprs, and they never go into workflow
inputs: only the worker and gateway hold them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from constitution.capabilities import OutputMode


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AMEND_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default=Path(".amend"), description="State of the dev stack.")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "amend-rounds"
    temporal_ui_port: int = 8233

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; unset: embedded PostgreSQL under data_dir."
    )

    model_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; unset: the scripted stand-in model."
    )
    model_api_key: SecretStr = SecretStr("not-needed")
    model_name: str = "amend-proposer"
    grader_model_name: str | None = Field(default=None, description="Defaults to model_name.")
    model_timeout_s: float = 60.0
    model_concurrency: int = Field(default=4, ge=1)
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
        description="Least time between two posts to one channel (Slack allows about one a "
        "second); the Slack stand-in enforces the same rate. 0: no pacing.",
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
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="json: one object a line, with round and proposal ids.",
    )
    worker_metrics_bind: str | None = Field(
        default=None, description="host:port of the worker's Prometheus endpoint; unset: none."
    )

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def temporal_ui_url(self) -> str:
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
