"""The ocrq worker: `celery -A worker worker` runs one pinned, warm process per core."""

from worker.threads import limit_threads

limit_threads(1)  # before numpy/onnxruntime are imported anywhere in this process

from worker.app import app  # noqa: E402

__all__ = ["app"]
