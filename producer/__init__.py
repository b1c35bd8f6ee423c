"""The ocrq producer: the `ocrq` CLI, the walker, submission, status and exporters."""
