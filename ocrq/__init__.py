"""ocrq core shared by producer and worker: configuration, errors, storage, pipeline."""

__version__ = "0.1.0"
