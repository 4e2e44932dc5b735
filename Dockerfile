# bids-perfusion container image (docs/hpc.md).
# GPU image by default: torch's CUDA 12.8 wheel (runs on CPU-only machines too).
#   docker build -t bids-perfusion .
# CPU image:
#   docker build -t bids-perfusion:cpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#   docker run --rm --network none -v /data/bids:/data:ro -v /data/out:/out \
#       bids-perfusion /data /out participant
# BASE may be any Debian or Ubuntu image; one without Python gets it from apt.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_VERSION=2.13.0
# Empty: torch from pip's configured index (a local test build); see docs/hpc.md.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG VERSION=0.1.0
ARG SOURCE=
LABEL org.opencontainers.image.title="bids-perfusion" \
      org.opencontainers.image.description="BIDS App for quantitative perfusion MRI (DSC and ASL)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NIPYPE_NO_ET=1 \
    BIDS_PERFUSION_CONTAINER=docker \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/bidsapp

RUN if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip"; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 1000 --shell /bin/sh bidsapp

WORKDIR /opt/bids-perfusion
COPY constraints.txt ./
RUN if [ -n "${TORCH_INDEX}" ]; then set -- --index-url "${TORCH_INDEX}"; fi \
    && pip install -c constraints.txt "$@" "torch==${TORCH_VERSION}"

COPY setup.cfg pyproject.toml MANIFEST.in README.md LICENSE ./
COPY bids_perfusion ./bids_perfusion
COPY containers/entrypoint.sh /usr/local/bin/bids-perfusion-entrypoint
# The validator comes with its own Deno runtime (the deno wheel): no network at run time.
# (the checks run with a throw-away HOME: no root-owned cache left in the user's home)
RUN pip install -c constraints.txt "torch==${TORCH_VERSION}" . bids-validator-deno \
    && HOME=/tmp/build-home bids-perfusion --version \
    && HOME=/tmp/build-home bids-validator-deno --version \
    && rm -rf /tmp/build-home

USER bidsapp
WORKDIR /home/bidsapp
ENTRYPOINT ["/usr/local/bin/bids-perfusion-entrypoint"]
