"""`ocrq bench`: our engines, the queue path and the peers side by side on folders with
ground truth (evalsets -> runners in pinned processes -> one table, JSON and a chart).

Kept free of heavy imports: the bench's worker processes import this package before they
have set their thread limits.
"""
