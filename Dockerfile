# Custom Dataflow worker image for redact: CUDA + TensorRT, the Beam SDK boot entrypoint,
# the project and its models. See docs/season.md for the build and job-submission commands.
#
# The Beam SDK version and Python minor version MUST match the launcher's (the machine that
# submits the job): apache-beam 2.78.0, Python 3.11 here (tests/test_dataflow_graph.py checks).
ARG BEAM_VERSION=2.78.0

# NVIDIA's TensorRT image: CUDA 12, cuDNN, TensorRT 10, Python 3.12 by default -> we install 3.11.
FROM nvcr.io/nvidia/tensorrt:24.08-py3 AS base

ARG BEAM_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REDACT_CACHE=/opt/redact/cache

RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The Beam SDK harness boot binary (the container entrypoint Dataflow expects).
COPY --from=apache/beam_python3.11_sdk:2.78.0 /opt/apache/beam /opt/apache/beam

WORKDIR /opt/redact
COPY pyproject.toml README.md LICENSE ./
COPY redact ./redact
COPY pipelines ./pipelines
COPY configs ./configs
COPY models ./models
COPY scripts ./scripts
RUN pip install --upgrade pip \
    && pip install "apache-beam[gcp]==${BEAM_VERSION}" ".[gcp,tensorrt,openvino]" onnxruntime-gpu

# Detector weights, baked in so workers never download anything at run time. The default
# config's detector is in models/ (copied above); build/teachers/ carries the optional teacher
# weights for configs that list them (may be empty; filled on the build machine as in
# docs/season.md). Every model of the default config is sha256-checked, from outside
# /opt/redact so that the installed package (its packaged configs/ and models/) is checked, not
# the sources copied above.
COPY build/teachers/ /opt/redact/cache/teachers/
RUN cd / && python -c "from redact.cli import load_config; from redact.detection import ModelRegistry; \
r = ModelRegistry.load(); [r.verify(r.resolve(m)) for m in load_config(None).models]; print('models ok')"

ENTRYPOINT ["/opt/apache/beam/boot"]
