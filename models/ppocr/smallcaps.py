"""Small capitals written in one case, by measuring each glyph in the line crop.

Books set names, headings and first words in small capitals: "THE PALACE OF THE KING",
where only T, P, K are full capitals and the rest are capital shapes at about x-height.
Typographically they are lower-case letters drawn as capitals (OpenType `smcp`); book
transcriptions write them so ("The Palace of the King"), others (UW-III, UNLV) in
capitals. The recognizer sees a crop scaled to a fixed height with no page context: it
reads them as capitals, or in mixed case ("KInNEY"). On the oldbooks eval set that was
0.45 CER points, the largest error class.

The glyphs' heights settle it. A CTC step s lies over input column 8 s (measured: of
13,000 ascender and x-height letters on oldbooks, 2 % were misclassified by height at
that offset, 4 % at 8 s + 4), so the ink blob nearest that column is the glyph. Its
ascent (baseline minus top) is compared with the line's full capitals and ascender
letters; capitals well below their height are small capitals.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

# Lower-case letters that reach cap height in roman type (t and f stop short or overhang).
ASCENDERS = frozenset("bdhkl")
# A capital shorter than this share of the line's capital height is a small capital.
# Measured on oldbooks: small capitals 0.60-0.70 of cap height, capitals 0.92-1.05.
SMALL_RATIO = 0.8
_BLOCK = 256  # blobs compared at once in `whole_glyphs`
MIN_GLYPH_HEIGHT = 6  # crop pixels (of 48); smaller blobs are dots, commas, noise
# Lower-case letters whose small capitals have the same shape, only a little taller.
LOOKALIKES = frozenset("cosuvwxz")
_WORD = re.compile(r"[^\W\d_]+")
_TWO_CAPITALS = re.compile(r"[A-Z].*[A-Z]")


def needs_measuring(text: str, mode: str, running: bool | None = None) -> bool:
    """Whether `recase_small_caps` could change `text` in `mode`, so its glyphs must be
    measured. Only words with two capitals can be small capitals. Written in capitals
    (mode "capitals", or "auto" outside running text) such a word changes only if it
    holds a letter that upper-cases to another one, so lines read all in capitals
    (receipts, headings) are not measured: measuring took 6 % of the receipts'
    recognition time (342 of their 800 lines) for nothing. `running` is
    `lowers_words(text, mode)` where the caller has it already."""
    words = [w for w in _WORD.findall(text) if _TWO_CAPITALS.search(w)]
    if lowers_words(text, mode) if running is None else running:
        return bool(words)
    return any(len(ch.upper()) == 1 and ch.upper() != ch for w in words for ch in w)


def lowers_words(text: str, mode: str) -> bool:
    """Whether `mode` writes this line's small-capital words in lower case: always in
    "lower", in running text (`in_running_text`) in "auto"."""
    return mode == "lower" or (mode == "auto" and in_running_text(text))


def in_running_text(text: str) -> bool:
    """Whether the line holds a word read in lower case with a letter small capitals do
    not look like (all but c o s u v w x z, whose small capitals are their lower-case
    shapes): running text, not a heading, byline or author list set in capitals."""
    return any(len(w) >= 2 and w.islower() and set(w) - LOOKALIKES for w in _WORD.findall(text))


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Ink pixels of a crop (any value range): Otsu's threshold, ink the smaller class
    (dark text on light paper, or light text on a dark band)."""
    lo, hi = float(gray.min()), float(gray.max())
    if hi - lo < 1e-6:
        return np.zeros(gray.shape, dtype=np.uint8)
    scaled = ((gray - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return mask if mask.mean() <= 0.5 else 1 - mask


def _baseline(centre: np.ndarray, bottom: np.ndarray, height: int) -> np.ndarray:
    """Baseline under each glyph: a straight line through the glyph bottoms near their
    median (descenders and blobs cut by the crop's lower edge, i.e. the next line, left
    out), so a slightly tilted crop is measured against its own slope (a flat baseline
    read a skewed line's right end as tall) and one stray blob cannot tilt it."""
    flat = np.full(len(centre), np.median(bottom))
    inside = bottom < height
    if inside.sum() < 3:
        return flat
    near = inside & (np.abs(bottom - np.median(bottom[inside])) <= 3)
    for tolerance in (3.0, 2.0):
        if near.sum() < 3 or np.ptp(centre[near]) < 1:
            return flat
        fit = np.polyfit(centre[near], bottom[near], 1)
        near = inside & (np.abs(bottom - np.polyval(fit, centre)) <= tolerance)
    return np.polyval(fit, centre)


def whole_glyphs(blobs: np.ndarray) -> np.ndarray:
    """Blob stats without the pieces of broken glyphs: a blob whose columns lie within a
    taller blob's columns. A scan can break a stem off a capital ("N" as a tall body and
    a short foot); the nearest-centre choice in `glyph_ascents` then measured the foot,
    an x-height glyph, and took "CNN" for small capitals (UW-III lines 0.64 -> 0.62 %
    CER, INT8, and 0.59 -> 0.58 % FP32; no other eval line or page scored differently,
    side by side with scripts/eval_engine.py). An accent within a capital's columns is
    dropped too, which leaves it out of the capital's ascent, as it should be."""
    if len(blobs) < 2:
        return blobs
    left = blobs[:, cv2.CC_STAT_LEFT]
    right = left + blobs[:, cv2.CC_STAT_WIDTH]
    height = blobs[:, cv2.CC_STAT_HEIGHT]
    piece = np.zeros(len(blobs), dtype=bool)
    # In row blocks: a hostile crop can hold thousands of blobs, and the whole n x n
    # comparison would then take hundreds of MB.
    for start in range(0, len(blobs), _BLOCK):
        rows = slice(start, start + _BLOCK)
        piece[rows] = (
            (left[rows, None] >= left[None, :])
            & (right[rows, None] <= right[None, :])
            & (height[rows, None] < height[None, :])
        ).any(axis=1)
    return blobs[~piece]


def glyph_ascents(gray: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Ascent (baseline minus top, crop pixels) of the glyph nearest each column; NaN where
    no glyph reaches within 3 columns."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink_mask(gray), connectivity=8)
    glyphs = whole_glyphs(stats[1:][stats[1:, cv2.CC_STAT_HEIGHT] >= MIN_GLYPH_HEIGHT])
    out = np.full(len(columns), np.nan)
    if len(glyphs) == 0:
        return out
    top = glyphs[:, cv2.CC_STAT_TOP].astype(float)
    left = glyphs[:, cv2.CC_STAT_LEFT]
    right = left + glyphs[:, cv2.CC_STAT_WIDTH]
    centre = (left + right) / 2.0
    ascent = _baseline(centre, top + glyphs[:, cv2.CC_STAT_HEIGHT], gray.shape[0]) - top
    for n, x in enumerate(columns):
        near = np.nonzero((left <= x + 3) & (right >= x - 3))[0]
        if near.size:
            out[n] = ascent[near[np.argmin(np.abs(centre[near] - x))]]
    return out


def _cap_height(text: str, ascent: np.ndarray) -> float | None:
    """The line's capital height: upper quartile of word-initial capitals and ascender
    letters (full height by design, whatever the words around them are set in)."""
    tall = [
        a
        for n, (ch, a) in enumerate(zip(text, ascent, strict=True))
        if np.isfinite(a)
        and (ch in ASCENDERS or (ch.isupper() and (n == 0 or not text[n - 1].isalpha())))
    ]
    return float(np.percentile(tall, 75)) if tall else None


def recase_small_caps(text: str, ascent: np.ndarray, mode: str, running: bool | None = None) -> str:
    """`text` with its small-capital words in one case. `ascent[n]` is character n's
    measured ascent (NaN: not measured). A word with two capitals counts as small
    capitals when the median ascent of its capitals, the first letter aside, is below
    SMALL_RATIO of the line's capital height. It is then written (`mode`):
    - "capitals": in capitals. The recognizer reads small capitals in mixed case
      ("MopED", "KInNEY"), which no transcription wants.
    - "lower": its capitals lowered, the first letter only if it is that short too
      (small-capital "of", "the" inside a heading).
    - "auto": lowered where the line is running text (`in_running_text`: names and first
      words, "Mr. Edwin Landseer"), in capitals elsewhere (headings, bylines, author
      lists) and where the word has no full-height capital at all (an acronym, or a
      lead-in "HE MOPED.": lowered, it would lose the capital it needs).
    `running` is `lowers_words(text, mode)` where the caller has it already."""
    cap = _cap_height(text, ascent)
    if cap is None:
        return text
    running = lowers_words(text, mode) if running is None else running
    chars = list(text)
    for word in _WORD.finditer(text):
        caps = [n for n in range(word.start(), word.end()) if text[n].isupper()]
        if len(caps) < 2:
            continue
        inner = [ascent[n] for n in caps if n != word.start() and np.isfinite(ascent[n])]
        if not inner or np.median(inner) >= SMALL_RATIO * cap:
            continue
        first = ascent[word.start()]
        first_short = bool(np.isfinite(first) and first < SMALL_RATIO * cap)
        if not running or (mode == "auto" and first_short):
            # per letter, one for one: "ß".upper() is "SS", which would shift the rest
            for n in range(word.start(), word.end()):
                chars[n] = text[n].upper() if len(text[n].upper()) == 1 else text[n]
            continue
        for n in caps:
            # Letters after the first follow the word (kerned capitals can touch and be
            # measured as one tall blob); the first is lowered only if it is short itself.
            if n != word.start() or first_short:
                chars[n] = text[n].lower()
    return "".join(chars)
