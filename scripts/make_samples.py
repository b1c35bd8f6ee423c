"""Render the bundled sample folder (samples/*.png) with Pillow: our own text, our own
images, so the demo needs no download and carries no third-party data."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

FONTS = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"

SAMPLES = {
    "receipt.png": [
        "CORNER GROCERY",
        "12 Market Street",
        "Milk 1L            1.20",
        "Bread              2.35",
        "Apples 1kg         3.10",
        "TOTAL              6.65",
        "Thank you for shopping!",
    ],
    "letter.png": [
        "Dear Ms. Patel,",
        "Thank you for your letter of 3 March.",
        "The invoice number is 2024-0117 and the",
        "amount due is 415 euros, payable by May.",
        "Kind regards, Jonas Berg",
    ],
    "form.png": [
        "APPLICATION FORM",
        "Name: Maria Lopez",
        "Date of birth: 14/07/1988",
        "Phone: +44 20 7946 0958",
    ],
}


def render(lines: list[str], font_name: str, size: int = 28) -> Image.Image:
    font = ImageFont.truetype(str(FONTS / font_name), size)
    width = max(int(font.getlength(line)) for line in lines) + 80
    height = len(lines) * int(size * 1.8) + 80
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * int(size * 1.8)), line, fill="black", font=font)
    return image


def main(out: Path = Path("samples")) -> None:
    out.mkdir(exist_ok=True)
    fonts = ["DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSans.ttf"]
    for (name, lines), font in zip(SAMPLES.items(), fonts, strict=True):
        render(lines, font).save(out / name, optimize=True)
        (out / name).with_suffix(".gt.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
