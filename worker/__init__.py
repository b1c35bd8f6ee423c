"""The ocrq worker: `celery -A worker worker` runs one pinned, warm process per core
(the app is `worker.celery:app`), and `ocrq run` runs the same job code in a local pool
(`worker.local`).

Every process that imports the worker runs its math libraries single-threaded: set here,
before anything imports numpy or onnxruntime, and inherited by the pool's children.
"""

from ocrq.threads import limit_threads

limit_threads(1)
