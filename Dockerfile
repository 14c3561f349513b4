# kumoclient for the compose rig (docker-compose.yml): runs docker/policy.lua, which
# delivers every message to the `mta` service. Build context: the repository root.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The README's install steps ("python3 -m venv .venv && . .venv/bin/activate && pip install
# -e ."), as a regular install: the image holds a copy of the project, not a working tree.
# tests/test_compose.py keeps the two in step.
WORKDIR /app
COPY . /app
RUN python3 -m venv /opt/venv && . /opt/venv/bin/activate && pip install --no-cache-dir .
# what `. /opt/venv/bin/activate` does, for every later command
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Not root. /data is the spool and log directory (a named volume in docker-compose.yml,
# which takes this ownership when first created).
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin kumoclient \
    && mkdir /data \
    && chown kumoclient:kumoclient /data
USER kumoclient

EXPOSE 2025
# Healthy when the SMTP listener answers with its 220 greeting.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 2025), 3); assert s.recv(512).startswith(b'220'); s.sendall(b'QUIT\\r\\n'); s.recv(512)"]
# SIGTERM: stop accepting, finish in-flight transactions within 10 s, exit 0.
STOPSIGNAL SIGTERM
CMD ["kumoclient", "run", "--policy", "/app/docker/policy.lua", "--data-dir", "/data"]
