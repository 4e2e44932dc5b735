# bids-perfusion container. GPU build by default: the CUDA wheel of torch matching the base
# image; `--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu` for a CPU image.
#   docker build -t bids-perfusion .
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out bids-perfusion /data /out participant
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV NIPYPE_NO_ET=1 \
    BIDS_PERFUSION_CONTAINER=docker \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/bids-perfusion
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY bids_perfusion ./bids_perfusion
RUN pip install "torch==${TORCH_VERSION}" . \
    && useradd --create-home --uid 1000 bidsapp

USER bidsapp
WORKDIR /home/bidsapp
ENTRYPOINT ["bids-perfusion"]
