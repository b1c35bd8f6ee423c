"""Rendered text fixtures for OCR tests: lines and pages drawn with Pillow and the DejaVu
fonts that ship inside matplotlib (no test data copied from anywhere).

Stable API used by several test modules:
    render_line(text, height=48, font="DejaVuSans.ttf") -> HxWx3 uint8 RGB
    render_page(lines, height=40, font="DejaVuSans.ttf", width=None) -> HxWx3 uint8 RGB
    render_runs([(text, small), ...]) -> (HxWx3 uint8 RGB, centre column of each char)
    render_columns([[line, ...], ...], px, gutter) -> HxW uint8, bilevel (0 and 255 only)
and page files with their ground truth, for tests that push files through the queue:
    write_pages(folder, count) -> {absolute path: truth}   (short pages, ~1 s of OCR)
    write_slow_pages(folder, count, lines=40) -> {absolute path: truth}   (long pages)
    write_slow_page(path, columns=6, lines=60) -> absolute path (one page that is slow to read)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SAMPLE_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Invoice 2024-118: total 1,234.50 EUR",
    "Reading order runs top to bottom.",
    "Pack my box with six dozen liquor jugs!",
]


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=32)
def load_font(font: str = "DejaVuSans.ttf", size: int = 32) -> ImageFont.FreeTypeFont:
    path = Path(font) if Path(font).is_absolute() else font_dir() / font
    return ImageFont.truetype(str(path), size)


def _font_for_height(font: str, height: int) -> ImageFont.FreeTypeFont:
    # Cap-to-descender height of DejaVu is ~1.17 em; leave ~30 % of the line as margin.
    return load_font(font, max(6, int(round(height * 0.6))))


def render_line(
    text: str,
    height: int = 48,
    font: str = "DejaVuSans.ttf",
    margin: int | None = None,
    ink: int = 0,
    paper: int = 255,
) -> np.ndarray:
    """One line of black text on white, `height` pixels tall, width fitted to the text."""
    f = _font_for_height(font, height)
    x0, _, x1, _ = f.getbbox(text)
    margin = height // 3 if margin is None else margin
    width = max(1, x1 - min(x0, 0)) + 2 * margin
    image = Image.new("RGB", (width, height), (paper,) * 3)
    draw = ImageDraw.Draw(image)
    # Anchor "lm": vertically centred on the middle of the line box.
    draw.text((margin - min(x0, 0), height / 2), text, font=f, fill=(ink,) * 3, anchor="lm")
    return np.asarray(image).copy()


def render_page(
    lines: list[str],
    height: int = 40,
    font: str = "DejaVuSans.ttf",
    width: int | None = None,
    margin: int = 60,
    spacing: float = 1.6,
) -> np.ndarray:
    """Left-aligned lines on a white page, `height` px per line and `spacing` x height
    between baselines."""
    f = _font_for_height(font, height)
    text_w = max((f.getbbox(t)[2] for t in lines), default=0)
    width = width or text_w + 2 * margin
    page_h = int(2 * margin + spacing * height * max(len(lines), 1))
    image = Image.new("RGB", (width, page_h), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        y = margin + spacing * height * i + height / 2
        draw.text((margin, y), text, font=f, fill=(0, 0, 0), anchor="lm")
    return np.asarray(image).copy()


# Justified spaces stop at this many ems (type sizes); a line that would need more is
# left short. Typeset text keeps them near a third of an em by hyphenating.
MAX_SPACE = 0.5


def render_columns(
    columns: list[list[str]],
    px: int,
    gutter: int,
    font: str | Path = "DejaVuSerif.ttf",
    size: tuple[int, int] | None = None,
    margin: int = 80,
    leading: float = 1.25,
    justify: bool = True,
) -> np.ndarray:
    """Columns of lines (justified: each but a column's last fills its width), `px`-pixel
    type, `gutter` pixels between columns, as a scanner's bilevel mode gives them: slightly blurred, then one threshold. `size`
    (h, w) defaults to what the text needs."""
    face = load_font(str(font), px)
    col_w = max((int(face.getlength(t)) for col in columns for t in col), default=0) + 1
    step = round(px * leading)
    needed = (
        2 * margin + step * max(map(len, columns), default=0),
        2 * margin + len(columns) * col_w + (len(columns) - 1) * gutter,
    )
    h, w = size or needed
    image = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(image)
    for c, col in enumerate(columns):
        for i, text in enumerate(col):
            x, y = margin + c * (col_w + gutter), margin + i * step
            words = text.split()
            if not justify or i == len(col) - 1 or len(words) < 2:
                draw.text((x, y), text, font=face, fill=0)
                continue
            space = (col_w - sum(face.getlength(wd) for wd in words)) / (len(words) - 1)
            space = min(space, MAX_SPACE * px)  # as a typesetter's hyphenation keeps them
            for word in words:  # spread over the spaces so the line fills its column
                draw.text((x, y), word, font=face, fill=0)
                x += face.getlength(word) + space
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)))
    return np.where(blurred > 140, 255, 0).astype(np.uint8)


SMALL_CAPS_RATIO = 0.72  # small capitals drawn at this share of the capitals' size


def render_runs(
    runs: list[tuple[str, bool]], height: int = 48, font: str = "DejaVuSerif.ttf", cap: int = 30
) -> tuple[np.ndarray, list[float]]:
    """Draw (text, small) runs on one baseline: small runs in capitals at
    SMALL_CAPS_RATIO of the size, as small capitals are set ("Mr. E" + "dwin" small).
    Returns the image and each character's centre column."""
    image = Image.new("RGB", (2000, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x, baseline, centres = 12.0, height * 0.75, []
    for text, small in runs:
        face = load_font(font, round(cap * SMALL_CAPS_RATIO) if small else cap)
        for ch in text.upper() if small else text:
            width = draw.textlength(ch, font=face)
            draw.text((x, baseline), ch, font=face, fill=(0, 0, 0), anchor="ls")
            centres.append(x + width / 2)
            x += width
    return np.asarray(image)[:, : int(x) + 12].copy(), centres


def render_spaced(
    pieces: list[tuple[str, int]], height: int = 48, font: str = "DejaVuSerif.ttf", size: int = 26
) -> tuple[np.ndarray, str, list[float]]:
    """Draw (word, gap) pieces on one baseline, each word followed by a blank of `gap`
    pixels (0: none, the next word touches), as set type with chosen spaces. Returns the
    image, the text (a space for each gap) and each character's centre column."""
    face = load_font(font, size)
    image = Image.new("RGB", (3000, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x, baseline, text, centres = 12.0, height * 0.7, "", []
    for word, gap in pieces:
        for ch in word:
            width = draw.textlength(ch, font=face)
            draw.text((x, baseline), ch, font=face, fill=(0, 0, 0), anchor="ls")
            text, x = text + ch, x + width
            centres.append(x - width / 2)
        if gap:
            text, x = text + " ", x + gap
            centres.append(x - gap / 2)
    return np.asarray(image)[:, : int(x) + 12].copy(), text, centres


PAGES = [
    ["Invoice 2024-118", "Total 1,234.50 EUR", "Paid by card"],
    ["The quick brown fox", "jumps over the lazy dog."],
    ["Reading order runs", "top to bottom."],
    ["Pack my box with", "six dozen liquor jugs!"],
]


def write_pages(folder: Path, count: int, suffix: str = ".png") -> dict[str, str]:
    """Rendered text pages; returns {absolute path: ground truth}."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(count):
        lines = PAGES[i % len(PAGES)] + [f"Page number {i}"]
        path = folder / f"page_{i:03d}{suffix}"
        Image.fromarray(render_page(lines, height=36)).save(path)
        truth[str(path.resolve())] = "\n".join(lines)
    return truth


def write_slow_pages(folder: Path, count: int, lines: int = 40) -> dict[str, str]:
    """Valid text pages with many lines: each takes the engine a second or more, long
    enough to kill a worker mid-task or to hit a tiny time limit."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    for i in range(count):
        text = [f"Line {n} of page {i}: {words[n % 8]} {words[(n + i) % 8]}" for n in range(lines)]
        path = folder / f"slow_{i:03d}.png"
        Image.fromarray(render_page(text, height=32)).save(path)
        truth[str(path.resolve())] = "\n".join(text)
    return truth


def write_slow_page(path: Path, columns: int = 6, lines: int = 60) -> str:
    """One valid page that takes long to read: `columns` columns of `lines` text lines
    (6 x 60: about 8 s of OCR on an idle core here, 4 x 45 took 4 s), the way a dense
    broadsheet scan would be. A job is one page, so slowness must come from one page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [
        render_page([f"Column {c} line {n} of a long and slow scan page" for n in range(lines)])
        for c in range(columns)
    ]
    gutter = 60
    height = max(c.shape[0] for c in cols)
    width = sum(c.shape[1] for c in cols) + gutter * (columns - 1)
    page = np.full((height, width, *cols[0].shape[2:]), 255, np.uint8)
    x = 0
    for col in cols:
        page[: col.shape[0], x : x + col.shape[1]] = col
        x += col.shape[1] + gutter
    Image.fromarray(page).save(path)
    return str(path.resolve())
