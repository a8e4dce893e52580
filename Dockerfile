# syntax=docker/dockerfile:1
# One image for every certtoken service; the command picks the service (see docker-compose.yml):
#   docker run certtoken:local run|api|ca-worker|notifier|db upgrade|admin ...|ca create ...
# No secrets are baked in: they come at run time from CERTTOKEN_* variables or secret files.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CERTTOKEN_DATA_DIR=/data

# A fixed, unprivileged uid so that volume and secret-file permissions are predictable.
RUN groupadd --system --gid 10001 certtoken \
    && useradd --system --uid 10001 --gid certtoken --no-create-home \
        --home-dir /data --shell /usr/sbin/nologin certtoken \
    && install -d -o certtoken -g certtoken -m 0750 /data /backups

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
# Pinned by the same constraints file as development and CI; the sources are not kept.
RUN pip install -c constraints.txt ".[hsm]" \
    && cd / && rm -rf /src

WORKDIR /data
VOLUME ["/data"]
USER certtoken:certtoken
EXPOSE 8000

ENTRYPOINT ["certtoken"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
