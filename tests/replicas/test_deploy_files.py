"""docker-compose.yml, deploy/nginx.conf and the Dockerfile agree with each other and with the
app's settings. There is no Docker engine here, so the compose file is checked as data; the
nginx file is rendered as the replicas tests use it and checked by nginx itself (`nginx -t`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings
from tests.replicas.harness import NGINX, NGINX_TEMPLATE, REPO_ROOT, need, render_nginx_conf

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
APPS = ("app1", "app2")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so `<<:` merges work"
    return {str(k): str(v) for k, v in env.items()}


def _compose_cli() -> list[str] | None:
    """`docker compose` (the plugin) or the older `docker-compose`, if either is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid_for_compose_itself(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    shutil.copytree(REPO_ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-test\n")
    checked = subprocess.run(
        [*cli, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_has_two_replicas_nginx_and_postgres() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", *APPS, "nginx"}

    postgres = services["postgres"]
    assert "pgvector" in postgres["image"]
    assert "healthcheck" in postgres
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "ports" not in postgres  # reachable by the replicas only

    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "3000:3000" in nginx["ports"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == set(APPS)


def test_compose_replicas_are_identical_but_for_their_worker_id() -> None:
    services = _compose()["services"]
    postgres_env = _env(services["postgres"])
    envs = [_env(services[name]) for name in APPS]
    for name, env in zip(APPS, envs, strict=True):
        app = services[name]
        assert app["build"] == "."
        assert app["env_file"] == ".env"  # the Slack and model secrets
        assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(app["security_opt"])
        assert app["init"] is True
        assert env["WORKER_ID"] == name
        # Every variable is one the app reads (a typo would silently be ignored).
        known = set(Settings.model_fields) | {
            "lease_seconds",
            "shutdown_grace_seconds",
            "worker_id",
        }
        assert {k.lower() for k in env} <= known, env
        # The drain after SIGTERM ends before Docker's kill.
        grace = int(env["SHUTDOWN_GRACE_SECONDS"])
        assert int(app["stop_grace_period"].removesuffix("s")) > grace
        # The database of the postgres service, with its user and password.
        url = env["DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://")
        assert f"{postgres_env['POSTGRES_USER']}:" in url
        assert url.endswith(f"@postgres:5432/{postgres_env['POSTGRES_DB']}")
        assert postgres_env["POSTGRES_PASSWORD"] in url
        assert app["volumes"] == ["app-data:/data"]  # file blobs shared by both
    without_id = [{k: v for k, v in env.items() if k != "WORKER_ID"} for env in envs]
    assert without_id[0] == without_id[1]
    assert envs[0]["WORKER_ID"] != envs[1]["WORKER_ID"]


def test_nginx_upstream_is_the_compose_replicas_on_their_port() -> None:
    conf = NGINX_TEMPLATE.read_text()
    services = _compose()["services"]
    servers = re.findall(r"^\s*server (\S+):(\d+) ", conf, flags=re.M)
    assert servers == [(name, _env(services[name])["PORT"]) for name in APPS]
    assert re.search(r"^\s*listen 3000;$", conf, flags=re.M)
    # Streaming (SSE) under /v1 must not be buffered, and may stay open for long.
    v1 = conf[conf.index("location /v1/") :]
    v1 = v1[: v1.index("}")]
    assert "proxy_buffering off;" in v1
    assert re.search(r"proxy_read_timeout (\d+)h;", v1)
    for path in ("location = /slack/events", "location = /healthz"):
        assert path in conf


def test_rendered_nginx_conf_changes_only_addresses_and_paths(tmp_path: Path) -> None:
    template = NGINX_TEMPLATE.read_text()
    rendered = render_nginx_conf(
        template, listen_port=18080, upstream_ports=[18001, 18002, 18003], runtime_dir=tmp_path
    )
    code = "\n".join(line.split("#")[0] for line in rendered.splitlines())
    assert "app1" not in code
    assert "/var/cache/nginx" not in code
    assert f"pid {tmp_path}/nginx.pid;" in rendered
    assert "listen 127.0.0.1:18080;" in rendered
    servers = re.findall(r"^\s*server 127\.0\.0\.1:(\d+) max_fails=.*;$", rendered, re.M)
    assert servers == ["18001", "18002", "18003"]
    changed = {"server", "listen", "pid", "client_body_temp_path", "proxy_temp_path"}
    changed |= {"fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"}

    def directives(text: str) -> list[str]:
        lines = [line.strip() for line in text.splitlines()]
        return [line for line in lines if line and line.split()[0] not in changed]

    assert directives(rendered) == directives(template)


def test_nginx_accepts_the_rendered_conf(tmp_path: Path) -> None:
    need(NGINX.exists(), f"{NGINX} is missing (apt-get install nginx-light)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            NGINX_TEMPLATE.read_text(),
            listen_port=18080,
            upstream_ports=[18001, 18002],
            runtime_dir=tmp_path,
        )
    )
    checked = subprocess.run(
        [str(NGINX), "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr


def test_dockerfile_runs_as_non_root_with_the_sandbox_and_a_health_check() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any("scripts/build-sandbox" in line for line in lines if line.startswith(("RUN", "&&")))
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in lines)
    assert lines[-1].startswith("CMD") and "run" in lines[-1]
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored  # secrets never enter the image
