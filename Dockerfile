# The ocrq worker and CLI. Untested here (no Docker engine on the build machine).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ocrq ./ocrq
COPY producer ./producer
COPY worker ./worker
COPY models ./models
COPY server ./server
COPY samples ./samples
# The worker needs no torch: export/verify tooling is the optional [export] extra.
RUN pip install ".[postgres,serve]" && useradd --create-home ocrq
USER ocrq
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO"]
