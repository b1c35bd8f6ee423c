"""The FastAPI application: routes over `server.service.Service`. OpenAPI at /docs: Swagger
UI with its script and style served from here (`fastapi_offline`'s copies, under
/static/docs/), so the docs work on a machine without internet. No ReDoc: its page loads
a logo from its maker's CDN."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

from fastapi import (
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask

from ocrq.config import PDF_TEXT_MODES
from ocrq.errors import BadImage
from ocrq.storage import decode_path
from producer.export_documents import DOCUMENT_FORMATS, document_pages, write_document
from server import page, records
from server.guard import Guard
from server.metrics import Metrics
from server.service import Accepted, Refused, Service, Upload

PdfText = Enum("PdfText", {m: m for m in PDF_TEXT_MODES}, type=str)  # type: ignore[misc]


class ExportFormat(str, Enum):
    json = "json"
    txt = "txt"
    hocr = "hocr"
    alto = "alto"
    pdf = "pdf"


MEDIA = {
    "pdf": "application/pdf",
    "hocr": "application/xhtml+xml",
    "alto": "application/xml",
    "txt": "text/plain; charset=utf-8",
}

DOCS_ASSETS = "/static/docs"  # Swagger UI's files (public, as all of /static/ is)
bearer = HTTPBearer(auto_error=False, description="OCRQ_API_TOKEN, when the server has one")


def create_app(service: Service) -> FastAPI:
    config = service.config

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPIOffline(
        title="ocrq",
        summary="Batch OCR queue: images and PDFs in, text with boxes out.",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        redoc_url=None,
    )
    metrics = Metrics(service.snapshot, lambda: service.infer_waiting)
    app.add_middleware(
        Guard,
        token=config.token,
        max_body=config.max_upload_bytes,
        max_waiting=config.max_waiting,
        max_in_flight=config.max_in_flight,
        service=service,
        metrics=metrics,
    )
    # the guard checks the token; this only shows it in the OpenAPI docs ("Authorize")
    auth = [Security(bearer)] if config.token else []

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)

    # ---- taking work -------------------------------------------------------------------

    @app.post(
        "/infer",
        tags=["ocr"],
        dependencies=auth,
        responses={
            202: {"description": "Not finished within `timeout`: poll the document's URL."},
            413: {"description": "Over the upload size or page limit."},
            422: {"description": "Every page failed; the body says why."},
            429: {"description": "Too many /infer requests waiting: see Retry-After."},
        },
    )
    async def infer(
        file: Annotated[UploadFile, File(description="One image or PDF.")],
        timeout: Annotated[
            float | None,
            Query(ge=0, le=3600, description="Seconds to wait before answering 202 instead."),
        ] = None,
        pdf_text: Annotated[PdfText | None, Query(description="PDF text layers.")] = None,
        force: Annotated[bool, Query(description="Run again even if these bytes were.")] = False,
    ) -> Response:
        """OCR one file and answer with its text, lines and words with their boxes and
        confidences, and provenance. The same bytes with the same options answer with
        the earlier result (a `duplicate` document) without running again."""
        started = time.perf_counter()
        accepted = await run_in_threadpool(
            service.accept_uploads,
            [Upload(file.file, file.filename)],
            pdf_text.value if pdf_text else None,
            force,
        )
        doc = accepted.documents[0]
        wait = config.infer_timeout if timeout is None else timeout
        ids = await run_in_threadpool(service.wait_ids, doc["id"])
        finished = await service.waiters.wait(ids, wait)
        if not finished:
            return JSONResponse(
                {**doc, "status": "open"},
                status_code=202,
                headers={"Location": doc["url"]},
            )
        body = await run_in_threadpool(_document, service, doc["id"], True)
        if body["status"] in ("done", "partial"):
            metrics.infer.observe(time.perf_counter() - started)
        code = 422 if body["status"] == "failed" else 200
        return JSONResponse(body, status_code=code)

    @app.post("/batch_infer", tags=["ocr"], status_code=202, dependencies=auth)
    def batch_infer(
        files: Annotated[list[UploadFile], File(description="Images or PDFs (repeat the field).")],
        pdf_text: Annotated[PdfText | None, Query()] = None,
        force: Annotated[bool, Query()] = False,
    ) -> dict:
        """Take several files as one batch and answer at once with their document ids."""
        uploads = [Upload(f.file, f.filename) for f in files]
        return _accepted_json(
            service.accept_uploads(uploads, pdf_text.value if pdf_text else None, force)
        )

    @app.post("/jobs", tags=["ocr"], status_code=202, dependencies=auth)
    def submit_jobs(
        files: Annotated[list[UploadFile] | None, File(description="Images or PDFs.")] = None,
        paths: Annotated[
            list[str] | None,
            Form(description="Files or folders under the server's OCRQ_INPUT_ROOTS."),
        ] = None,
        pattern: Annotated[
            list[str] | None, Form(description="With paths: globs, as `ocrq submit -p`.")
        ] = None,
        pdf_text: Annotated[PdfText | None, Form()] = None,
        force: Annotated[bool, Form()] = False,
    ) -> dict:
        """Submit a batch of uploaded files, or of paths the server may read (walked,
        hashed and deduped as `ocrq submit` does); answers at once with the ids."""
        mode = pdf_text.value if pdf_text else None
        if files and paths:
            raise Refused(400, "give files or paths, not both")
        if paths:
            return _accepted_json(service.accept_paths(paths, pattern or (), mode, force))
        uploads = [Upload(f.file, f.filename) for f in files or []]
        return _accepted_json(service.accept_uploads(uploads, mode, force))

    # ---- reading back ------------------------------------------------------------------

    @app.get("/jobs/{job_id}", tags=["results"], dependencies=auth)
    def get_job(job_id: int) -> dict:
        """One page job: its status, the reason it failed, worker, timings."""
        found = records.job_json(service.store, job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return found

    @app.get("/documents/{doc_id}", tags=["results"], dependencies=auth)
    def get_document(doc_id: int) -> dict:
        """A document (the jobs of one file in one batch): status and pages done."""
        return _document(service, doc_id, False)

    @app.get("/documents/{doc_id}/export", tags=["results"], dependencies=auth)
    def export_document(
        doc_id: int,
        format: Annotated[ExportFormat, Query()] = ExportFormat.json,  # noqa: A002
        dehyphenate: bool = False,
    ) -> Response:
        """The document as JSON (text, lines, words, boxes), text, hOCR, ALTO or a
        searchable PDF, once none of its pages is waiting."""
        jobs = records.document_jobs(service.store, doc_id)
        if jobs is None:
            raise HTTPException(404, f"no document {doc_id}")
        status = records.document_status(service.store, jobs)
        if status["status"] == "open":
            raise HTTPException(409, f"not finished: {status['pages_done']} of {len(jobs)} pages")
        if format == ExportFormat.json:
            return JSONResponse(records.document_json(service.store, jobs))
        pages, missing = document_pages(service.store, jobs)
        if not pages:
            why = "; ".join(f"page {p + 1}: {reason}" for p, reason in missing)
            raise HTTPException(422, f"no page could be read ({why})")
        source = Path(decode_path(jobs[0]["path"]))
        if format == ExportFormat.pdf and not source.exists():
            raise HTTPException(
                410,
                "the searchable PDF is drawn over the original file, which is no longer "
                "kept (uploads: OCRQ_SPOOL_KEEP_HOURS after the document finished, less "
                "when the spool is over OCRQ_SPOOL_MAX_BYTES); json, txt, hocr and alto "
                "still answer",
            )
        folder = tempfile.mkdtemp(prefix="ocrq-export-")
        name = Path(records.display_name(jobs[0]["path"])).stem + DOCUMENT_FORMATS[format.value]
        target = Path(folder) / name
        passwords = service.settings.limits.pdf_passwords
        try:
            write_document(source, pages, target, format.value, dehyphenate, passwords)
        except BadImage as exc:  # an encrypted source no OCRQ_PDF_PASSWORD_FILE entry opens
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(422, str(exc)) from None
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            target,
            media_type=MEDIA[format.value],
            filename=name,
            content_disposition_type="attachment",
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    # ---- the server's own state --------------------------------------------------------

    @app.get("/health", tags=["server"])
    def health() -> JSONResponse:
        """200 when jobs can run; 503 with the reason when they cannot."""
        problem = service.backend.problem()
        body = {
            "status": "ok" if problem is None else "unavailable",
            "mode": service.backend.mode,
            "problem": problem,
            "uptime_seconds": round(time.time() - service.started_at, 1),
            **service.backend.health(),
        }
        return JSONResponse(body, status_code=200 if problem is None else 503)

    @app.get("/metrics", tags=["server"], response_class=PlainTextResponse, dependencies=auth)
    def prometheus() -> Response:
        """Prometheus text format: jobs by status, queue depth, pages/s, latencies."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status", tags=["server"], dependencies=auth)
    def status() -> dict:
        """What the status page shows: batches and documents with their progress,
        pages/s, failures with their reasons, the workers."""
        return service.snapshot()

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page.HTML, headers={"Content-Security-Policy": page.CSP})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/status.js", include_in_schema=False)
    def script() -> Response:
        return Response(page.SCRIPT, media_type="text/javascript; charset=utf-8")

    @app.get("/static/status.css", include_in_schema=False)
    def style() -> Response:
        return Response(page.STYLE, media_type="text/css; charset=utf-8")

    app.state.service = service
    app.state.metrics = metrics
    return app


def _accepted_json(accepted: Accepted) -> dict:
    return {
        "batch_id": accepted.batch_id,
        "queued_pages": accepted.queued,
        "duplicate_pages": accepted.duplicates,
        "documents": accepted.documents,
        "status_url": "/status",
    }


def _document(service: Service, doc_id: int, full: bool) -> dict:
    jobs = records.document_jobs(service.store, doc_id)
    if jobs is None:
        raise HTTPException(404, f"no document {doc_id}")
    if full:
        return records.document_json(service.store, jobs)
    return records.document_status(service.store, jobs)
