# One image for every agency's node; `ledger` is the entry point, so
#   docker run IMAGE node run --config /cluster/ID/node.toml
# runs a node and any other `ledger` command works the same way.
# docker-compose.yml (made by `ledger cluster init` / `ledger cluster compose`)
# builds it as agency-ledger:local.
FROM python:3.11-slim

# libzbar0: `ledger verify --qr` decodes QR images with zbar (pyzbar loads
# it at run time). plyvel ships manylinux wheels with LevelDB inside; on a
# platform without one, add build-essential and libleveldb-dev here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzbar0 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs: the build does not see .venv, var/ or tests.
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY consensus consensus
COPY node node
COPY api api
COPY cli cli
RUN pip install . && rm -rf /src

# The cluster folder is mounted here (see docker-compose.yml). The node
# reads its key (mode 0600, owned by the host user) as root in the
# container; run with --user and a matching uid to drop root.
WORKDIR /cluster
ENTRYPOINT ["ledger"]
CMD ["--help"]
