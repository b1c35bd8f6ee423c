"""OCRmyPDF plugin: `ocrmypdf --plugin ocrmypdf_ocrq in.pdf out.pdf` OCRs with ocrq's engine.

OCRmyPDF rasterizes each page and hands the image to `OcrqEngine.generate_ocr`, which
reads it with ocrq's warm engine (loaded once per process, shared by OCRmyPDF's page
threads) through the worker's one page loop and returns OCRmyPDF 17's word tree
(`OcrElement`); OCRmyPDF draws the invisible text layer from it and grafts it on the page.

This package sits on top of the floors (it imports `worker/` and `models/`), which is why
it is a top-level package and not `ocrq.ocrmypdf`: `ocrq/` is the bottom floor and never
imports an engine. It is loaded only when named with `--plugin` (it declares no entry
point), so installing it never changes what a plain `ocrmypdf` run does.

The engine is chosen with OCRmyPDF's `--ocr-engine auto` (the default); `--ocr-engine
tesseract` runs Tesseract even with this plugin loaded. ocrq's own settings come from
the `OCRQ_*` variables (`OCRQ_ENGINE`, `OCRQ_MODEL`, `OCRQ_PRECISION`, `OCRQ_MODELS`,
...). Page rotation (`--rotate-pages`) and deskew (`--deskew`) are not supported: the
run is refused up front with a message saying so.
"""

from __future__ import annotations

from ocrmypdf import hookimpl

from ocrmypdf_ocrq.engine import OcrqEngine, check_supported, is_selected

__all__ = ["OcrqEngine", "check_options", "get_ocr_engine"]


@hookimpl
def check_options(options) -> None:  # type: ignore[no-untyped-def]
    if is_selected(options):
        check_supported(options)


@hookimpl
def get_ocr_engine(options=None):  # type: ignore[no-untyped-def]
    if options is not None and not is_selected(options):
        return None  # --ocr-engine tesseract / none: leave it to that engine
    return OcrqEngine()
