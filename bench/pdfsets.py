"""PDF evaluation sets, built on the fly from image eval sets into a temporary folder (never
into the repository: the data's licences differ, see ../shared/eval/README.md).

Scanned PDFs made with img2pdf, losslessly (a JPEG is embedded as it is, a TIFF's pixels
are re-encoded without loss), so every PDF tool OCRs the very pixels the image sets hold.
From each page set given to `ocrq bench --pdf` (line sets and zoned UNLV pages are left
out: a text layer has no boxes to keep inside zones):

- `NAME`: one PDF per image (`sroie`: one per receipt; `oldbooks`: one per book page);
- `NAME-multipage`: for book sets (named `oldbooks`), also one PDF of all their pages,
  in name order.

Each page's truth is the `.gt.txt` beside its image, scored under the set's conventions
from the eval README (`bench.evalsets.score_item`: SROIE case-insensitively, oldbooks
after joining end-of-line hyphens).

A page is placed at the resolution img2pdf reads from its image: 96 dpi (its default)
where the image states none or, as the book TIFFs do, a resolution without a unit; 300
dpi where it reads an implausible one. OCRmyPDF rasterizes an image-only page at its
image's resolution, so the OCR'd pixels are the image's whatever size the page is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.evalsets import Conventions, EvalSet, Item, score_item

MULTIPAGE = "oldbook"  # sets named so also get one PDF of all their pages
SCAN_DPI = 300.0  # where img2pdf reads an implausible resolution (scans are 300 dpi)
DPI_RANGE = (50.0, 4800.0)


@dataclass(frozen=True)
class PdfDoc:
    path: Path  # the PDF
    pages: tuple[Item, ...]  # its pages' images and truth, in page order


@dataclass(frozen=True)
class PdfSet:
    name: str
    folder: Path  # holds the set's PDFs and nothing else
    docs: tuple[PdfDoc, ...]
    conventions: Conventions

    @property
    def pages(self) -> int:
        return sum(len(doc.pages) for doc in self.docs)


def write_pdf(images: Sequence[Path], target: Path) -> Path:
    """A scanned PDF of `images`, one page each, without re-encoding loss."""
    import img2pdf

    def layout(imgwidthpx, imgheightpx, ndpi):  # type: ignore[no-untyped-def]
        plausible = all(DPI_RANGE[0] <= d <= DPI_RANGE[1] for d in ndpi)
        dpi = ndpi if plausible else (SCAN_DPI, SCAN_DPI)
        return img2pdf.get_fixed_dpi_layout_fun(dpi)(imgwidthpx, imgheightpx, ndpi)

    target.write_bytes(img2pdf.convert([str(p) for p in images], layout_fun=layout))
    return target


def pdf_items(evalset: EvalSet) -> tuple[Item, ...]:
    """The set's pages a PDF bench can score: whole pages (no line images, no zones)."""
    if evalset.conventions.line_images:
        return ()
    return tuple(item for item in evalset.items if item.zones is None)


def build_sets(evalsets: Sequence[EvalSet], out_dir: Path) -> list[PdfSet]:
    """The PDF sets made from `evalsets`, written under `out_dir`, one folder each."""
    sets = []
    for evalset in evalsets:
        items = pdf_items(evalset)
        if not items:
            continue
        name = evalset.name.replace("/", "-")
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        docs = tuple(PdfDoc(write_pdf([i.image], folder / f"{i.name}.pdf"), (i,)) for i in items)
        sets.append(PdfSet(name, folder, docs, evalset.conventions))
        if MULTIPAGE in name.lower() and len(items) > 1:
            folder = out_dir / f"{name}-multipage"
            folder.mkdir(parents=True, exist_ok=True)
            path = write_pdf([i.image for i in items], folder / f"{name}.pdf")
            sets.append(
                PdfSet(f"{name}-multipage", folder, (PdfDoc(path, items),), evalset.conventions)
            )
    return sets


def score_pages(pdf_set: PdfSet, texts: dict[str, list[str]]) -> tuple[int, int, int]:
    """(edits, reference characters, pages missing) over the set; `texts` maps each PDF's
    file name to its pages' text, as a runner read them back. A page with no text read
    (a failed PDF, a missing page) scores as empty."""
    dist_sum = ref_sum = missing = 0
    for doc in pdf_set.docs:
        got = texts.get(doc.path.name) or []
        for index, item in enumerate(doc.pages):
            if index >= len(got):
                missing += 1
            text = got[index] if index < len(got) else ""
            dist, n = score_item(item, pdf_set.conventions, text, [])
            dist_sum += dist
            ref_sum += n
    return dist_sum, ref_sum, missing
