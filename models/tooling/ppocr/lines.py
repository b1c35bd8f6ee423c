"""Text lines rendered for fine-tuning the recognizer: many fonts, sizes and inks, then the
damage scans do (blur, noise, bilevel thresholds, JPEG, low resolution, slight turn).

The texts are drawn from prose (public-domain books the caller gives) and from lines
built to look like receipts and forms (prices, dates, codes, totals), so digits and
punctuation are as common as in the documents ocrq reads.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = ("/usr/share/fonts",)


@dataclass(frozen=True)
class RenderOptions:
    min_size: int = 18  # font size in pixels before damage
    max_size: int = 56
    # share of lines binarized (bilevel scans, like book pages at 300 dpi)
    bilevel: float = 0.3
    # share of lines drawn small then upscaled (low-resolution scans, thermal receipts)
    low_res: float = 0.35


def find_fonts(dirs: Sequence[str] = FONT_DIRS) -> list[Path]:
    """Latin text fonts found under `dirs` (symbol, math and emoji fonts left out)."""
    skip = re.compile(r"(?i)math|symbol|dingbat|emoji|standardsymbols|d050000l|cursor|fontawesome")
    return [
        p
        for d in dirs
        for p in sorted(Path(d).rglob("*"))
        if p.suffix.lower() in (".ttf", ".otf") and not skip.search(p.name)
    ]


def prose_lines(paths: Sequence[Path], min_len: int = 8, max_len: int = 90) -> list[str]:
    """Lines of running text cut from plain-text books: paragraphs re-wrapped at random
    widths, so lines end mid-sentence as on a page."""
    rng = random.Random(0)
    out: list[str] = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="ignore")
        for para in re.split(r"\n\s*\n", text):
            words = para.split()
            i = 0
            while i < len(words):
                width = rng.randint(min_len, max_len)
                line: list[str] = []
                while i < len(words) and len(" ".join([*line, words[i]])) <= width:
                    line.append(words[i])
                    i += 1
                if not line:
                    line, i = [words[i][:max_len]], i + 1
                s = " ".join(line)
                if len(s) >= 3 and sum(c.isalpha() for c in s) >= len(s) // 3:
                    out.append(s)
    return out


_ITEMS = (
    "MILK",
    "BREAD",
    "EGGS",
    "COFFEE",
    "TEA",
    "SUGAR",
    "RICE",
    "CHICKEN",
    "BEEF",
    "APPLE",
    "ORANGE JUICE",
    "WATER",
    "SODA",
    "CHIPS",
    "SOAP",
    "TISSUE",
    "BATTERY",
    "PEN",
    "PAPER A4",
    "NOODLE",
    "BUTTER",
    "CHEESE",
    "YOGURT",
    "SALAD",
    "BURGER",
    "FRIES",
    "PIZZA",
    "CAKE",
    "Cappuccino",
    "Latte",
    "Sandwich",
    "Muffin",
    "Croissant",
    "Bagel",
    "Service Charge",
)
_WORDS = (
    "TOTAL",
    "SUBTOTAL",
    "TAX",
    "GST",
    "VAT",
    "CASH",
    "CHANGE",
    "ROUNDING",
    "DISCOUNT",
    "INVOICE",
    "RECEIPT",
    "Date",
    "Time",
    "Table",
    "Cashier",
    "Qty",
    "Price",
    "Amount",
    "Tel",
    "Fax",
    "No",
    "Ref",
    "Card",
    "VISA",
    "MASTERCARD",
    "THANK YOU",
    "Please come again",
    "Goods sold are not returnable",
    "Member",
    "Points",
    "Balance",
    "Order",
    "Item",
)


def _money(rng: random.Random) -> str:
    return f"{rng.choice(['', '', 'RM', '$', 'RM ', 'USD ', '€'])}{rng.randint(0, 999)}.{rng.randint(0, 99):02d}"


def form_line(rng: random.Random, vocabulary: Sequence[str]) -> str:
    """A receipt- or form-like line: item and price, key and value, date, code, address."""
    kind = rng.randrange(8)
    if kind == 0:
        item = rng.choice(_ITEMS) if rng.random() < 0.6 else rng.choice(vocabulary).upper()
        return f"{rng.randint(1, 12)} {item} {' ' * rng.randint(1, 4)}{_money(rng)}"
    if kind == 1:
        return f"{rng.choice(_WORDS)}{rng.choice([':', ' :', '', ' '])} {_money(rng)}"
    if kind == 2:
        d, m, y = rng.randint(1, 31), rng.randint(1, 12), rng.randint(1990, 2030)
        sep = rng.choice("/-.")
        t = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        return rng.choice(
            [f"{d:02d}{sep}{m:02d}{sep}{y}", f"Date: {d:02d}{sep}{m:02d}{sep}{y} {t}"]
        )
    if kind == 3:
        code = "".join(
            rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(rng.randint(6, 14))
        )
        return f"{rng.choice(['No', 'Invoice No', 'GST Reg No', 'Doc No', 'Bill#', 'REF'])}{rng.choice([':', ' :', '.', ''])} {code}"
    if kind == 4:
        words = " ".join(rng.choice(vocabulary).capitalize() for _ in range(rng.randint(1, 3)))
        return f"{rng.randint(1, 999)}, {words} {rng.choice(['Street', 'Road', 'Jalan', 'Avenue', 'Lane'])}, {rng.randint(10000, 99999)}"
    if kind == 5:
        return f"Tel: {rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}" + rng.choice(
            ["", f" Fax: {rng.randint(100, 999)}-{rng.randint(100000, 999999)}"]
        )
    if kind == 6:
        return f"{rng.randint(1, 99)} x {_money(rng)} {rng.choice(['', '=', '@'])} {_money(rng)} {rng.choice(['SR', 'ZR', 'T', ''])}"
    return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 6))).upper()


def random_text(rng: random.Random, prose: Sequence[str], vocabulary: Sequence[str]) -> str:
    r = rng.random()
    if r < 0.55 and prose:
        return rng.choice(prose)
    if r < 0.9:
        return form_line(rng, vocabulary)
    # punctuation, digits and symbols the other sources rarely produce
    pool = "0123456789.,:;!?'\"()[]{}-/+*=%&#@$<>_|~" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return " ".join(
        "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(1, 6))
    )


def render(text: str, font_path: Path, rng: random.Random, opts: RenderOptions) -> np.ndarray:
    """One line of `text` in that font, damaged as scans are: an RGB uint8 crop as the
    detector would cut it (a few pixels of margin)."""
    size = rng.randint(opts.min_size, opts.max_size)
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(text)
    ink = rng.randint(0, 90)
    paper = rng.randint(max(ink + 90, 150), 255)
    mx, my = rng.randint(1, size // 2 + 1), rng.randint(1, size // 4 + 2)
    w, h = right - left + 2 * mx, bottom - top + 2 * my
    image = Image.new("L", (max(w, 8), max(h, 8)), paper)
    ImageDraw.Draw(image).text((mx - left, my - top), text, font=font, fill=ink)
    gray = np.asarray(image, dtype=np.uint8)
    return _damage(gray, rng, opts)


def _damage(gray: np.ndarray, rng: random.Random, opts: RenderOptions) -> np.ndarray:
    h, w = gray.shape
    if rng.random() < 0.3:  # slight turn or shear, as a line cut from a skewed page
        angle = rng.uniform(-1.2, 1.2)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[0, 1] += rng.uniform(-0.15, 0.15)
        gray = cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.25:  # ink spread or thinned
        k = np.ones((2, 2), np.uint8)
        gray = cv2.erode(gray, k) if rng.random() < 0.5 else cv2.dilate(gray, k)
    if rng.random() < opts.low_res:
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(
            gray, (max(int(w * f), 4), max(int(h * f), 4)), interpolation=cv2.INTER_AREA
        )
        gray = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        gray = cv2.GaussianBlur(gray, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(
            0, rng.uniform(2, 18), gray.shape
        )
        gray = np.clip(gray + noise, 0, 255).astype(np.uint8)
    if rng.random() < opts.bilevel:
        _, gray = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if rng.random() < 0.3:  # tinted paper
        tint = np.array([rng.randint(-25, 10) for _ in range(3)], dtype=np.int16)
        rgb = np.clip(rgb.astype(np.int16) + tint, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=rng.randint(30, 90))
        rgb = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return rgb


def stream(
    fonts: Sequence[Path],
    prose: Sequence[str],
    vocabulary: Sequence[str],
    seed: int,
    opts: RenderOptions | None = None,
) -> Iterator[tuple[np.ndarray, str]]:
    """Endless (crop, text) pairs."""
    rng = random.Random(seed)
    opts = opts or RenderOptions()
    while True:
        text = random_text(rng, prose, vocabulary).strip()
        if not text:
            continue
        try:
            yield render(text, rng.choice(fonts), rng, opts), text
        except (OSError, ValueError):  # a font that cannot draw this text: next one
            continue
