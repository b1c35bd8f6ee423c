"""One file per document: a searchable PDF, hOCR, ALTO or plain text, named after its
source relative to the folder it was submitted from (`scans/a/b.pdf` -> `DIR/a/b.pdf`,
`x.jpg` -> `DIR/x.pdf`), written document by document (one document's pages in memory at
a time). A page that failed is named in the export's summary and left without text."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ocrq.errors import BadImage
from ocrq.results import PageResult, RegionResult, page_text
from ocrq.storage import DONE, DUPLICATE, Store, decode_path
from producer.alto import write_alto
from producer.hocr import write_hocr
from producer.searchable_pdf import pdf_from_image_pages, pdf_from_pdf

DOCUMENT_FORMATS = {"pdf": ".pdf", "hocr": ".hocr", "alto": ".xml", "txt": ".txt"}
ASSUMED_DPI = 300.0  # an image that says nothing of its resolution


@dataclass
class DocumentExport:
    source: str  # the document's path
    target: Path | None  # the file written; None when no page could be read
    pages: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)  # (page, why)
    error: str | None = None  # why no file could be written, when none was


def export_documents(
    store: Store,
    out_dir: Path,
    fmt: str,
    batch_id: int | None = None,
    dehyphenate: bool = False,
    passwords: Sequence[str] = (),
) -> Iterator[DocumentExport]:
    """Write each document of the database (or of `batch_id`) to `out_dir` in `fmt`;
    yields what was written, one document at a time. A document whose file cannot be
    written (an encrypted source none of `passwords` opens) is yielded with its `error`
    and the export goes on."""
    for jobs in store.iter_documents(batch_id):
        source = decode_path(jobs[0]["path"])
        pages, missing = document_pages(store, jobs)
        done = DocumentExport(source, None, len(pages), missing)
        if pages:
            target = target_path(source, jobs[0]["batch_roots"], out_dir, fmt)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                write_document(Path(source), pages, target, fmt, dehyphenate, passwords)
                done.target = target
            except BadImage as exc:
                done.error = str(exc)
        yield done


def write_document(
    source: Path,
    pages: Sequence[PageResult],
    target: Path,
    fmt: str,
    dehyphenate: bool,
    passwords: Sequence[str] = (),
) -> None:
    if fmt == "pdf":
        if source.suffix.lower() == ".pdf":
            pdf_from_pdf(source, pages, target, passwords=passwords)
        else:
            pdf_from_image_pages(source, pages, target)
        return
    with open(target, "w", encoding="utf-8") as out:
        if fmt == "hocr":
            write_hocr(pages, out, title=source.name)
        elif fmt == "alto":
            write_alto(pages, out, source_name=source.name)
        else:
            regions = [r for page in pages for r in page.regions]
            out.write(page_text(regions, join_hyphens=dehyphenate) + "\n")


def target_path(source: str, roots: Sequence[str] | None, out_dir: Path, fmt: str) -> Path:
    """`out_dir` / the source's path relative to the submitted folder holding it (its
    name alone for a file submitted by itself, or for batches recorded before roots were
    stored resolved), with the format's suffix."""
    relative = Path(os.path.basename(source))
    for root in roots or ():
        if os.path.isabs(root) and source.startswith(root.rstrip(os.sep) + os.sep):
            relative = Path(os.path.relpath(source, root))
            break
    return out_dir / relative.with_suffix(DOCUMENT_FORMATS[fmt])


def document_pages(
    store: Store, jobs: Sequence[dict]
) -> tuple[list[PageResult], list[tuple[int, str]]]:
    """The document's pages that were read, in page order, and the ones that were not
    (failed, or not finished yet) with why."""
    source = {job["id"]: job["duplicate_of"] or job["id"] for job in jobs}
    regions = store.regions_for(sorted(set(source.values())))
    infos = _page_infos(store, jobs)
    pages, missing = [], []
    for job in jobs:
        if job["status"] not in (DONE, DUPLICATE):
            missing.append((job["page"], job["error"] or job["status"]))
            continue
        rows = [RegionResult.from_row(r) for r in regions.get(source[job["id"]], [])]
        info = infos.get(source[job["id"]]) or _image_info(job)
        pages.append(_page_result(job["page"], rows, info))
    return pages, missing


def _page_infos(store: Store, jobs: Sequence[dict]) -> dict[int, dict | None]:
    """page_info of each job, and of the originals its duplicates point at."""
    infos = {job["id"]: job.get("page_info") for job in jobs}
    wanted = [job["duplicate_of"] for job in jobs if job["duplicate_of"] not in (None, *infos)]
    for job_id in wanted:
        original = store.get_job(job_id)
        infos[job_id] = original.get("page_info") if original else None
    return infos


def _page_result(page: int, regions: list[RegionResult], info: dict) -> PageResult:
    own = [r for r in regions if r.page == page]
    return PageResult(
        page=page,
        width=int(info["width"]),
        height=int(info["height"]),
        dpi=float(info.get("dpi") or ASSUMED_DPI),
        regions=own,
        source="pdf-text" if info.get("source") == "pdf-text" else "ocr",
        blocks=[r.block for r in own],
        paragraphs=[r.paragraph for r in own],
        origin_pt=tuple(info.get("origin_pt") or (0.0, 0.0)),
    )


def _image_info(job: dict) -> dict:
    """For results recorded before pages kept their size: the image's own header."""
    with Image.open(decode_path(job["path"])) as image:
        dpi = (image.info.get("dpi") or (ASSUMED_DPI,))[0]
        return {"width": image.width, "height": image.height, "dpi": dpi, "source": "image"}
