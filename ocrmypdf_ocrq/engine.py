"""ocrq's engine behind OCRmyPDF's `OcrEngine` interface (OCRmyPDF 17's `generate_ocr` API).

One page image in, one `OcrElement` tree out: page > paragraph (ocrq's block and
paragraph of each region) > line (ocrq's visual line: regions side by side on one line of
print share it) > word (`ocrq.results.words_of`: the engine's word boxes, or the region
split by character count), every box in the page image's pixels. The sidecar text is
`ocrq.results.page_text`, the same page text `ocrq export` writes.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrmypdf.exceptions import BadArgsError, MissingDependencyError
from ocrmypdf.hocrtransform import BoundingBox, OcrClass, OcrElement
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence

if TYPE_CHECKING:
    from models.base import Engine
    from ocrq.config import Settings
    from ocrq.results import RegionResult

log = logging.getLogger(__name__)

# OCRmyPDF's `-l` codes this engine answers to: the default PP-OCR models read Latin
# script and were tuned and measured on English (docs/engines.md).
LANGUAGES = frozenset({"eng"})

_lock = threading.Lock()
_engine: Engine | None = None
_settings: Settings | None = None


def is_selected(options: Any) -> bool:
    """This plugin answers OCRmyPDF's default engine choice, `--ocr-engine auto`."""
    return getattr(options, "ocr_engine", "auto") == "auto"


def settings() -> Settings:
    """ocrq's settings from the `OCRQ_*` environment, read once per process; a bad value
    stops the run as a bad argument, with ocrq's own message."""
    global _settings
    if _settings is None:
        from ocrq.config import check_precision, settings_from_env
        from ocrq.errors import OcrqError

        try:
            loaded = settings_from_env()
            check_precision(loaded.engine.precision)
        except OcrqError as exc:
            raise BadArgsError(f"ocrq: {exc}") from None
        _settings = loaded
    return _settings


def warm_engine() -> Engine:
    """The process's engine, loaded on first use and kept (ONNX Runtime with one thread:
    OCRmyPDF's `--jobs` runs pages in parallel, and every page thread shares it)."""
    global _engine
    with _lock:
        if _engine is None:
            from models.registry import load_engine
            from ocrq.errors import OcrqError

            current = settings()
            try:
                _engine = load_engine(current.engine, current.models_dir, threads=1)
            except OcrqError as exc:
                raise MissingDependencyError(f"ocrq could not load its engine: {exc}") from None
            log.debug("ocrq engine %s loaded: %s", _engine.name, _engine.provenance)
        return _engine


def check_supported(options: Any) -> None:
    """Refuse, before any page is read, what this engine cannot do; load the engine now
    when OCRmyPDF runs pages in threads of this process (a missing model is reported at
    once, and the load is the one every page uses)."""
    unsupported = [
        flag
        for flag, wanted in (
            ("--rotate-pages", getattr(options, "rotate_pages", False)),
            ("--deskew", getattr(options, "deskew", False)),
        )
        if wanted
    ]
    if unsupported:
        raise BadArgsError(
            f"{' and '.join(unsupported)}: not supported by the ocrq engine (it finds no page "
            "orientation or skew angle); drop the option, or add --ocr-engine tesseract"
        )
    settings()
    if getattr(options, "use_threads", True):
        warm_engine()


def _version() -> str:
    try:
        return importlib.metadata.version("ocrq")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OcrqEngine(OcrEngine):
    """ocrq's warm engine as an OCRmyPDF OCR engine."""

    @staticmethod
    def version() -> str:
        return _version()

    @staticmethod
    def creator_tag(options: Any) -> str:
        return f"ocrq {_version()} ({settings().engine.engine})"

    def __str__(self) -> str:
        return f"ocrq {_version()}"

    @staticmethod
    def languages(options: Any) -> set[str]:
        return set(LANGUAGES)

    @staticmethod
    def get_orientation(input_file: Path, options: Any) -> OrientationConfidence:
        # Not supported: `check_supported` refuses --rotate-pages. Asked anyway (the API
        # without its checks), the answer is "no opinion", which OCRmyPDF never acts on.
        return OrientationConfidence(angle=0, confidence=0.0)

    @staticmethod
    def get_deskew(input_file: Path, options: Any) -> float:
        return 0.0  # not supported, as above: no rotation

    @staticmethod
    def supports_generate_ocr() -> bool:
        return True

    @staticmethod
    def generate_ocr(
        input_file: Path, options: Any, page_number: int = 0
    ) -> tuple[OcrElement, str]:
        from ocrq.results import page_text

        regions, width, height, dpi = read_image(Path(input_file))
        tree = page_tree(regions, width, height, dpi, page_number)
        return tree, page_text(regions)

    @staticmethod
    def generate_hocr(input_file: Path, output_hocr: Path, output_text: Path, options: Any) -> None:
        # OCRmyPDF 17 asks for hOCR only from engines without `generate_ocr`.
        raise NotImplementedError("the ocrq engine gives OCRmyPDF its word tree (generate_ocr)")

    @staticmethod
    def generate_pdf(input_file: Path, output_pdf: Path, output_text: Path, options: Any) -> None:
        """`--pdf-renderer sandwich`: a text-only page drawn from the same word tree with
        OCRmyPDF's own renderer, invisible text sized to the image."""
        import ocrmypdf
        from ocrmypdf.font import MultiFontManager
        from ocrmypdf.fpdf_renderer import Fpdf2PdfRenderer

        tree, text = OcrqEngine.generate_ocr(Path(input_file), options)
        fonts = MultiFontManager(Path(ocrmypdf.__file__).parent / "data")
        renderer = Fpdf2PdfRenderer(tree, tree.dpi or 72.0, fonts, invisible_text=True)
        renderer.render(Path(output_pdf))
        Path(output_text).write_text(text, encoding="utf-8")


def read_image(path: Path) -> tuple[list[RegionResult], int, int, float | None]:
    """One page image through ocrq's page loop: its regions in reading order, its size in
    pixels and its resolution (None when the file gives none)."""
    from dataclasses import replace

    from PIL import Image

    from ocrq.images import iter_pages
    from worker.pipeline import read_pages

    with Image.open(path) as im:  # headers only: size and resolution
        (width, height), dpi = im.size, _dpi(im.info.get("dpi"))
    # The image is OCRmyPDF's own temporary file, not a user's input: no input roots.
    limits = replace(settings().limits, input_roots=())
    regions = []
    # decoded as a worker decodes a page, and read by the worker's page loop
    for page in read_pages(warm_engine(), iter_pages(path, limits)):
        regions.extend(page.regions)
    return regions, width, height, dpi


def _dpi(raw: Any) -> float | None:
    """The mean of an image's x and y resolution, or None when it gives none."""
    try:
        values = [float(v) for v in raw] if raw else []
    except (TypeError, ValueError):
        return None
    values = [v for v in values if v > 1]
    return sum(values) / len(values) if values else None


def _box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> BoundingBox | None:
    """A box clipped to the page, or None where nothing of it is left."""
    x0, x1 = max(0.0, min(x0, x1)), min(float(width), max(x0, x1))
    y0, y1 = max(0.0, min(y0, y1)), min(float(height), max(y0, y1))
    if x1 <= x0 or y1 <= y0:
        return None
    return BoundingBox(left=x0, top=y0, right=x1, bottom=y1)


def _union(boxes: Sequence[BoundingBox]) -> BoundingBox:
    return BoundingBox(
        left=min(b.left for b in boxes),
        top=min(b.top for b in boxes),
        right=max(b.right for b in boxes),
        bottom=max(b.bottom for b in boxes),
    )


def page_tree(
    regions: Sequence[RegionResult],
    width: int,
    height: int,
    dpi: float | None,
    page_number: int = 0,
) -> OcrElement:
    """A page's regions (in reading order) as OCRmyPDF's tree: page > paragraph > line >
    word. Regions of one visual line make one line; paragraphs follow ocrq's (block,
    paragraph) numbers in reading order; empty regions and words off the page are left
    out."""
    from ocrq.results import words_of

    page = OcrElement(
        ocr_class=OcrClass.PAGE,
        bbox=BoundingBox(left=0, top=0, right=width, bottom=height),
        dpi=float(dpi) if dpi else None,
        page_number=page_number,
    )
    lines: dict[tuple[int, int, int], list[OcrElement]] = {}  # (block, paragraph, line)
    for region in regions:
        for word in words_of(region):
            text = word.text.strip()
            box = _box(*word.box, width, height)
            if not text or box is None:
                continue
            key = (region.block, region.paragraph, region.line)
            lines.setdefault(key, []).append(
                OcrElement(
                    ocr_class=OcrClass.WORD,
                    bbox=box,
                    text=text,
                    confidence=max(0.0, min(1.0, float(word.confidence))),
                )
            )
    paragraphs: dict[tuple[int, int], OcrElement] = {}
    for (block, paragraph, _), words in lines.items():
        line = OcrElement(ocr_class=OcrClass.LINE, bbox=_union([w.bbox for w in words]))
        line.children = words
        par = paragraphs.get((block, paragraph))
        if par is None:
            par = paragraphs[(block, paragraph)] = OcrElement(ocr_class=OcrClass.PARAGRAPH)
            page.children.append(par)
        par.children.append(line)
    for par in page.children:
        par.bbox = _union([line.bbox for line in par.children])
    return page
