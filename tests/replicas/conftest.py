"""Fixtures for the scale-out tests: the fakes in this process, the deployment as processes.

`start_cluster(...)` starts N replicas on one PostgreSQL behind nginx and stops all of it when
the test ends, passed or not; a failing test's report carries the tail of every log.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import ModelFake
from tests.fakes.slack_server import SlackFake, run_slack_fake
from tests.replicas.harness import NGINX, Cluster, Postgres, need, reset_schema

StartCluster = Callable[..., Awaitable[Cluster]]

_CLUSTERS = pytest.StashKey[list[Cluster]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for cluster in item.stash.get(_CLUSTERS, []):
            for title, tail in cluster.log_tails():
                report.sections.append((f"{title} (last lines)", tail))


@pytest.fixture
def requirements() -> None:
    """PostgreSQL (`TEST_DATABASE_URL`, the CI's second pass) and nginx; CI sets
    `REPLICAS_REQUIRED=1` there so a missing piece fails instead of skipping."""
    need(
        bool(os.environ.get("TEST_DATABASE_URL")),
        "replicas share one PostgreSQL: set TEST_DATABASE_URL",
    )
    need(
        NGINX.exists(),
        f"{NGINX} is missing (apt-get install nginx-light, or set NGINX_BIN)",
    )


@pytest.fixture
async def slack() -> AsyncIterator[SlackFake]:
    # Hundreds of replies in seconds: Slack's per-minute tiers would only slow the test down.
    async with run_slack_fake(enforce_rate_limits=False) as fake:
        yield fake


@pytest.fixture
async def postgres(requirements: None) -> AsyncIterator[Postgres]:
    """A cluster of this test's own, so it can be stopped and started under load."""
    need(
        Postgres.available(), "PostgreSQL server binaries are missing (apt-get install postgresql)"
    )
    cluster = await Postgres.create()
    try:
        yield cluster
    finally:
        await cluster.destroy()


@pytest.fixture
async def start_cluster(
    requirements: None,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    slack: SlackFake,
    model: ModelFake,
) -> AsyncIterator[StartCluster]:
    started: list[Cluster] = []
    request.node.stash[_CLUSTERS] = started

    async def start(*, database_url: str | None = None, **options: Any) -> Cluster:
        url = database_url or os.environ["TEST_DATABASE_URL"]
        await reset_schema(url)
        root = tmp_path / f"cluster{len(started)}"
        root.mkdir()
        cluster = await Cluster.start(
            root=root,
            database_url=url,
            slack_url=slack.url,
            bot_token=slack.bot_token,
            signing_secret=slack.signing_secret,
            model_url=model.url,
            **options,
        )
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            await cluster.close()
