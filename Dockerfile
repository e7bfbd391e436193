# stancestream worker image (CPU by default).
#
#   docker build -t stancestream .
#   # GPU: pass a CUDA wheel index instead of the CPU one, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t stancestream:cuda .
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index: PyPI's default Linux wheel pulls in gigabytes of CUDA libraries. This layer
# changes only with the build args, so editing the code does not download it again, and `pip install .` below
# finds the requirement already satisfied (2.13.0+cpu satisfies ==2.13.0).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

# Non-root user. /app is the working directory: run state (Faust, embedded store) goes to ./var. /cache is
# created here and owned by the user so that an empty named volume mounted on it takes that ownership.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stancestream \
    && mkdir -p /app /cache \
    && chown stancestream:stancestream /app /cache

# The whole context (pyproject.toml, shared/, services/, schemas/, adapters/); .dockerignore keeps out the venv,
# run state and caches. Installed in place (editable) because the code reads schemas/migrations and
# adapters/default next to itself.
COPY --chown=stancestream:stancestream . /opt/stancestream
RUN pip install -e /opt/stancestream

# The converted base model goes to the cache; Hugging Face ids are looked up (never downloaded) under it too.
ENV STANCESTREAM_CACHE_DIR=/cache \
    HF_HOME=/cache/huggingface
USER stancestream
WORKDIR /app

ENTRYPOINT ["stancestream"]
CMD ["worker"]
