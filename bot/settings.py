"""Settings from the environment and `.env` (names and defaults as in DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    #: Keep every Web API call within Slack's published rate-limit tiers (calls wait for room,
    #: optional ones are skipped); off for a Slack plan with higher limits.
    slack_pacing: bool = True

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    #: Retries of a failed model request (429, 5xx, connection errors), with backoff.
    model_max_retries: int = Field(default=3, ge=0, le=10)
    #: Seconds before a model request with no response is abandoned.
    model_timeout: float = Field(default=120.0, gt=0)
    #: The model endpoint's embedding model for file_search; unset uses the local model of
    #: the `local-embeddings` extra when installed, else keyword (BM25) ranking alone.
    embedding_model: str | None = None
    #: Python of the code_interpreter sandbox (made by scripts/build-sandbox).
    sandbox_python: Path = Path("/opt/slack-assistants/sandbox-venv/bin/python")
    #: Concurrent code_interpreter kernels, and seconds one execution may take.
    sandbox_kernels: int = Field(default=4, ge=1, le=64)
    sandbox_timeout: float = Field(default=30.0, gt=0)
    #: Prompt budget (estimated tokens) for runs without max_prompt_tokens.
    context_tokens: int = Field(default=100_000, ge=1_000)

    #: Largest file accepted by the Files API or taken from Slack, in MB (hosted: 512).
    max_file_mb: int = Field(default=512, ge=1, le=4096)

    #: Seconds a replica's hold on a run or a conversation lives without renewal: how long
    #: after a replica dies its work is taken over by another.
    lease_seconds: float = Field(default=15.0, ge=0.5, le=600)
    #: On SIGTERM, seconds the answers in flight get to finish before they end with a notice.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=3600)
    #: This process's name in `run.worker_id` (default: host, pid and a random suffix).
    worker_id: str | None = Field(default=None, max_length=64)

    database_url: str | None = None
    data_dir: Path = Path("data")
    assistants_file: Path = Path("assistants.yml")
    assistants_api_key: SecretStr | None = None
    port: int = Field(default=3000, ge=0, le=65535)
    log_level: str = "INFO"

    def missing_for_slack(self) -> list[str]:
        """Variables `run` cannot start without: the signing secret only verifies HTTP-mode
        requests, so Socket Mode does not need it."""
        missing = [] if self.slack_bot_token else ["SLACK_BOT_TOKEN"]
        if self.slack_app_token is None and not self.slack_signing_secret:
            missing.append("SLACK_SIGNING_SECRET")
        return missing

    def model_api_key(self) -> str:
        """Local model servers (vLLM, Ollama, llama.cpp) take any key; the SDK needs one."""
        if self.openai_api_key is not None:
            return self.openai_api_key.get_secret_value()
        return "unused" if self.openai_base_url else ""
