# syntax=docker/dockerfile:1
# Polku service image: uv-synced from the lock in a build stage, run as a non-root user.

FROM python:3.11.7-slim-bookworm AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY polku.py ./
COPY features ./features
COPY models ./models
COPY service ./service
COPY training ./training
RUN uv sync --frozen --no-dev

FROM python:3.11.7-slim-bookworm AS runtime
# libgomp is LightGBM's OpenMP runtime; curl serves the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 curl=7.88.1-10+deb12u14 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 polku && useradd --system --uid 10001 --gid polku --home-dir /app --shell /usr/sbin/nologin polku \
    && mkdir -p /data && chown 10001:10001 /data
WORKDIR /app
COPY --from=build --chown=10001:10001 /app /app
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    POLKU_ENV=prod \
    POLKU_DATA_DIR=/data \
    POLKU_HOST=0.0.0.0 \
    POLKU_PORT=8000
USER 10001
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${POLKU_PORT}/readyz || exit 1"]
ENTRYPOINT ["polku", "serve"]
