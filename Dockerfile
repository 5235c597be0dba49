# syntax=docker/dockerfile:1
# Build stage: a virtualenv with CPU-only torch and the project installed.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheel from PyTorch's index: the default PyPI wheel pulls several GB of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
RUN pip install .

# Runtime stage: no compilers, no source tree beyond migrations, a non-root user.
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    RECSYS_MODEL_DIR=/var/lib/recsys/models
RUN useradd --create-home --uid 10001 recsys \
    && mkdir -p /var/lib/recsys/models && chown -R recsys /var/lib/recsys
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/recsys
COPY alembic.ini ./
COPY migrations ./migrations
USER recsys
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
