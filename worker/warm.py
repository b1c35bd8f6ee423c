"""Warm state: everything a worker process loads once and keeps, in one place.

Set up by `init_process` (Celery's `worker_process_init`, or the embedded pool's child
start); tasks read it with `state()`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from models.base import Engine
from models.registry import load_engine
from ocrq.config import Settings, settings_from_env
from ocrq.storage import Store
from ocrq.threads import limit_threads
from worker.heap import release_free_memory
from worker.threads import pin_to_core

log = logging.getLogger("ocrq.worker")


@dataclass
class WarmState:
    settings: Settings
    store: Store
    engine: Engine
    core: int | None
    loaded_at: float
    load_seconds: float
    engine_loads: int

    @property
    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:core{self.core}"


_STATE: WarmState | None = None
_LOADS = 0  # how many times this process loaded an engine: the warm test checks it is 1


def init_process(index: int | None, settings: Settings | None = None) -> WarmState:
    global _STATE, _LOADS
    limit_threads(1)
    core = pin_to_core(index) if index is not None else None
    settings = settings or settings_from_env()
    started = time.perf_counter()
    engine = load_engine(settings.engine, settings.models_dir, threads=1)
    _LOADS += 1
    release_free_memory(force=True)  # what loading parsed and copied (ONNX graphs) is garbage now
    engine.provenance = {**engine.provenance, "engine_loads": _LOADS}
    _STATE = WarmState(
        settings=settings,
        store=Store(settings.db_url),
        engine=engine,
        core=core,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
        engine_loads=_LOADS,
    )
    log.info(
        "pid %s pinned to core %s, engine %s loaded in %.2fs (%s)",
        os.getpid(),
        core,
        engine.name,
        _STATE.load_seconds,
        engine.provenance.get("recognizer") or engine.provenance,
    )
    return _STATE


def state() -> WarmState:
    """The process's warm state; loaded on first use where no init hook ran (eager mode)."""
    return _STATE if _STATE is not None else init_process(None)


def reset() -> None:
    global _STATE
    if _STATE is not None:
        _STATE.store.dispose()
    _STATE = None
