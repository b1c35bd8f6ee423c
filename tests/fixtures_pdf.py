"""PDFs made in the tests: scans (img2pdf, lossless PNG), born-digital pages drawn with
pikepdf (Helvetica, a standard font pdfium and poppler both have), mixed documents."""

from __future__ import annotations

import io
from pathlib import Path

import img2pdf
import numpy as np
import pikepdf
from pikepdf import Array, Dictionary, Name
from PIL import Image

from tests.fixtures_text import render_page

SCAN_DPI = 200


def _pdf_bytes(pdf: pikepdf.Pdf, **save) -> bytes:
    out = io.BytesIO()
    pdf.save(out, **save)
    return out.getvalue()


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _helvetica(pdf: pikepdf.Pdf) -> pikepdf.Object:
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type1,
            BaseFont=Name.Helvetica,
            Encoding=Name.WinAnsiEncoding,
        )
    )


def _text_ops(lines: list[str], top: float, mode: int = 0, size: int = 24) -> str:
    ops = [f"BT {mode} Tr /F1 {size} Tf 72 {top - 96} Td {size * 1.5} TL"]
    ops += [f"({_esc(line)}) Tj T*" for line in lines]
    return "\n".join([*ops, "ET"])


def text_pdf(
    pages: list[list[str]], size: tuple[float, float] = (612, 792), rotate: int = 0
) -> bytes:
    """Born-digital pages: each line a text object in Helvetica 24 pt."""
    pdf = pikepdf.new()
    font = _helvetica(pdf)
    for lines in pages:
        page = Dictionary(
            Type=Name.Page,
            MediaBox=Array([0, 0, *size]),
            Resources=Dictionary(Font=Dictionary(F1=font)),
            Contents=pdf.make_stream(_text_ops(lines, size[1]).encode()),
        )
        if rotate:
            page.Rotate = rotate
        pdf.pages.append(pikepdf.Page(page))
    return _pdf_bytes(pdf)


def png_bytes(pixels: np.ndarray, dpi: float | None = SCAN_DPI) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return out.getvalue()


def scan_pdf(images: list[np.ndarray]) -> bytes:
    """One page per image, the image filling it at SCAN_DPI (lossless: PNG -> Flate)."""
    return img2pdf.convert([png_bytes(im) for im in images])


def combine(*documents: bytes) -> bytes:
    out = pikepdf.new()
    for data in documents:
        out.pages.extend(pikepdf.open(io.BytesIO(data)).pages)
    return _pdf_bytes(out)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def scan_image(lines: list[str], colour: bool = False) -> np.ndarray:
    page = render_page(lines, height=40)
    if colour:  # red ink: an RGB page that stays RGB
        page = page.copy()
        page[..., 0] = np.maximum(page[..., 0], 200)
    return page


def ink_box(pixels: np.ndarray, threshold: int = 128) -> tuple[int, int, int, int]:
    gray = pixels if pixels.ndim == 2 else pixels.min(axis=2)
    ys, xs = np.nonzero(gray < threshold)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
