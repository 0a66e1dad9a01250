# One image for the web server, the CPU and GPU workers and beat (docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Pango and fonts for WeasyPrint (the tumour-board PDF).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY inference ./inference
COPY tracker ./tracker
COPY config ./config
COPY templates ./templates
COPY static ./static
COPY manage.py ./
RUN pip install --no-cache-dir .
# The shipped model's ONNX export (CPU workers run it in ONNX Runtime), built and checked
# against Keras here so no worker builds it at start; a model activated later is exported into
# the same cache by the first worker that needs it.
RUN python -m inference export-onnx --cache /app/model-cache
RUN useradd --create-home tracker && mkdir -p /data/media /data/var \
    && chown -R tracker /data /app/model-cache
USER tracker
ENV MEDIA_ROOT=/data/media TRACKER_VAR_DIR=/data/var TRACKER_MODEL_CACHE=/app/model-cache
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
