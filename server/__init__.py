"""`ocrq serve`: the HTTP front of the queue (FastAPI on uvicorn).

It sits at the producer's level: it records jobs in the results database and hands them
to the Celery workers (through `ocrq.queue.Enqueuer`) or to a local pinned pool in its
own process (`worker.local.LocalPool`), and reads results back with the producer's
exporters. Nothing imports it but the `ocrq serve` command (the `ocrq.commands` entry
point). See docs/serve.md.
"""
