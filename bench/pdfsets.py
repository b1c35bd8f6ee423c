"""PDF evaluation sets, built on the fly from ../shared/eval into a temporary folder (never
into the repository: the data's licences differ, see its README).

Scanned PDFs made with img2pdf, losslessly (a JPEG is embedded as it is, a TIFF's pixels
are re-encoded without loss), so every PDF tool OCRs the very pixels the image sets hold:

- `sroie`: one PDF per receipt (`pages/sroie/*.jpg`);
- `oldbooks`: one PDF per book page (`pages/oldbooks/*.tif`);
- `oldbooks-multipage`: one PDF of all the book pages, in name order.

Each page's truth is the `.gt.txt` beside its image, scored under the set's conventions
from the eval README (`bench.evalsets.score_item`: SROIE case-insensitively, oldbooks
after joining end-of-line hyphens).

A page is placed at its image's own resolution when it gives a plausible one, else at the
set's: the book pages are 300 dpi scans whose TIFFs say 1 dpi; a receipt without one gets
img2pdf's default, 96 dpi. OCRmyPDF rasterizes an image-only page at its image's
resolution, so the OCR'd pixels are the image's whatever size the page is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.evalsets import Conventions, Item, conventions_for, discover, score_item

# (set name, folder under the eval root, image suffix, dpi when the image gives none)
SOURCES = (
    ("sroie", "pages/sroie", ".jpg", None),
    ("oldbooks", "pages/oldbooks", ".tif", 300.0),
)
MULTIPAGE = "oldbooks"  # this set also gets one PDF of all its pages
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


def write_pdf(images: Sequence[Path], target: Path, default_dpi: float | None) -> Path:
    """A scanned PDF of `images`, one page each, without re-encoding loss."""
    import img2pdf

    def layout(imgwidthpx, imgheightpx, ndpi):  # type: ignore[no-untyped-def]
        dpi = ndpi if all(DPI_RANGE[0] <= d <= DPI_RANGE[1] for d in ndpi) else None
        dpi = dpi or ((default_dpi, default_dpi) if default_dpi else (96.0, 96.0))
        return img2pdf.get_fixed_dpi_layout_fun(dpi)(imgwidthpx, imgheightpx, ndpi)

    target.write_bytes(img2pdf.convert([str(p) for p in images], layout_fun=layout))
    return target


def build_sets(
    eval_root: Path, out_dir: Path, limit: int | None = None, names: Sequence[str] = ()
) -> list[PdfSet]:
    """The PDF sets (all, or those in `names`) written under `out_dir`, one folder each.
    `limit` keeps the first N images of each source (sorted by name)."""
    sets = []
    for name, sub, suffix, default_dpi in SOURCES:
        wanted = (name, f"{name}-multipage") if name == MULTIPAGE else (name,)
        if names and not set(wanted) & set(names):
            continue
        source = Path(eval_root) / sub
        (found,) = discover([source], limit)
        items = tuple(i for i in found.items if i.image.suffix.lower() == suffix)
        conventions = conventions_for(name, items)
        if not names or name in names:
            folder = out_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            docs = tuple(
                PdfDoc(write_pdf([i.image], folder / f"{i.name}.pdf", default_dpi), (i,))
                for i in items
            )
            sets.append(PdfSet(name, folder, docs, conventions))
        multi = f"{name}-multipage"
        if name == MULTIPAGE and (not names or multi in names):
            folder = out_dir / multi
            folder.mkdir(parents=True, exist_ok=True)
            path = write_pdf([i.image for i in items], folder / f"{name}.pdf", default_dpi)
            sets.append(PdfSet(multi, folder, (PdfDoc(path, items),), conventions))
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
