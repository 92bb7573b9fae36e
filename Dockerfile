# The callbot control plane: `callbot serve` on port 8080, one process per bot.
# With the ray extra the same image runs the Ray nodes of deploy/kuberay/.
# Build: docker build -t callbot:0.1.0 .  (the tag deploy/kubernetes/ runs)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The wheels of aiortc, av, opencv and pylibsrtp carry their native libraries,
# so the slim image needs no extra system packages.
COPY pyproject.toml constraints.txt README.md ./
COPY callbot ./callbot
COPY media ./media
COPY plugins ./plugins
COPY api ./api
RUN pip install --constraint constraints.txt ".[ray]" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin callbot

USER callbot

ENV CALLBOT_HOST=0.0.0.0 \
    CALLBOT_PORT=8080
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]

CMD ["callbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
