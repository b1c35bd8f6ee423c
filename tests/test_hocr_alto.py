"""hOCR and ALTO exports (producer/hocr.py, producer/alto.py) of a two-page document: page
0 with the layout's blocks, paragraphs and word boxes, page 1 with none of them (one block,
one paragraph, words split by `words_of`). The ALTO file is validated against the ALTO 4.2
schema shipped in tests/data (see tests/data/ALTO-SOURCE.md), offline."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree

from ocrq.results import PageResult, RegionResult, Word, page_text, words_of
from producer.alto import ALTO_NS, write_alto
from producer.hocr import write_hocr

DATA = Path(__file__).parent / "data"
XHTML = "{http://www.w3.org/1999/xhtml}"
A = "{" + ALTO_NS + "}"


def quad(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def two_pages() -> list[PageResult]:
    # page 0: two columns; the left one is a block of two paragraphs, the right one a
    # block of one; "Total" and "12 EUR" are two regions on one visual line
    regions = [
        RegionResult(0, 0, quad(100, 100, 400, 130), "Dear Sir,", 0.91, 0),
        RegionResult(0, 1, quad(100, 200, 500, 230), "thank you <&> all", 0.8, 1),
        RegionResult(0, 2, quad(100, 240, 300, 270), "Total", 0.7, 2),
        RegionResult(0, 3, quad(320, 240, 460, 270), "12 EUR", 1.2, 2),
        RegionResult(0, 4, quad(900, 100, 1100, 130), "Right\x01 column", float("nan"), 0),
    ]
    words = [
        [Word("Dear", (100, 100, 220, 130), 0.95), Word("Sir,", (240, 101, 400, 129.5), 0.87)],
        words_of(regions[1]),
        [Word("Total", (100, 240, 300, 270), 0.7)],
        [Word("12", (320, 240, 370, 270), 0.99), Word("EUR", (380, 240, 460, 270), 1.5)],
        [
            Word("Right\x01", (900, 100, 1010, 130), -1.0),
            Word("column", (1020, 100, 1100, 130), 0.5),
        ],
    ]
    one = PageResult(
        0, 1240, 1754, 150, regions, blocks=[0, 0, 0, 0, 1], paragraphs=[0, 1, 1, 1, 0], words=words
    )
    two = PageResult(
        1,
        1240,
        1754,
        150,
        [
            RegionResult(1, 0, quad(100, 100, 700, 140), "Second page, first line", 0.5, 0),
            RegionResult(1, 1, quad(100, 160, 400, 200), "   ", 0.1, 1),  # no text: left out
            RegionResult(1, 2, quad(100, 220, 400, 260), "last line", 0.25, 2),
        ],
    )
    return [one, two]


# ---------------------------------------------------------------- hOCR


def hocr_of(pages) -> etree._Element:
    out = io.StringIO()
    write_hocr(pages, out, title="scan <1>.pdf")
    return etree.fromstring(out.getvalue().encode())


def title_props(element) -> dict[str, str]:
    props = {}
    for part in element.get("title").split(";"):
        key, _, value = part.strip().partition(" ")
        props[key] = value
    return props


def by_class(element, cls):
    return [e for e in element.iter() if e.get("class") == cls]


def test_hocr_head_and_pages():
    root = hocr_of(two_pages())
    assert root.tag == f"{XHTML}html"
    head = root.find(f"{XHTML}head")
    assert head.find(f"{XHTML}title").text == "scan <1>.pdf"
    meta = {m.get("name"): m.get("content") for m in head.iter(f"{XHTML}meta") if m.get("name")}
    assert meta["ocr-system"] == "ocrq"
    assert set(meta["ocr-capabilities"].split()) == {
        "ocr_page",
        "ocr_carea",
        "ocr_par",
        "ocr_line",
        "ocrx_word",
        "ocrp_wconf",
    }
    pages = by_class(root, "ocr_page")
    assert [title_props(p)["ppageno"] for p in pages] == ["0", "1"]
    assert [title_props(p)["bbox"] for p in pages] == ["0 0 1240 1754"] * 2
    assert title_props(pages[0])["scan_res"] == "150 150"
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))


def test_hocr_nesting_and_values_with_layout_given():
    page = by_class(hocr_of(two_pages()), "ocr_page")[0]
    blocks = by_class(page, "ocr_carea")
    assert len(blocks) == 2
    assert [len(by_class(b, "ocr_par")) for b in blocks] == [2, 1]
    lines = by_class(page, "ocr_line")
    words = [[w.text for w in by_class(line, "ocrx_word")] for line in lines]
    # regions of one visual line are one ocr_line; XML-invalid characters are dropped
    assert words == [
        ["Dear", "Sir,"],
        ["thank", "you", "<&>", "all"],
        ["Total", "12", "EUR"],
        ["Right", "column"],
    ]
    for word in by_class(page, "ocrx_word"):
        assert word.getparent().get("class") == "ocr_line"
        assert word.getparent().getparent().get("class") == "ocr_par"
        assert word.getparent().getparent().getparent().get("class") == "ocr_carea"
    dear, sir = by_class(lines[0], "ocrx_word")
    assert title_props(dear) == {"bbox": "100 100 220 130", "x_wconf": "95"}
    assert title_props(sir) == {"bbox": "240 101 400 130", "x_wconf": "87"}  # rounded outwards
    assert title_props(lines[0])["bbox"] == "100 100 400 130"
    assert title_props(lines[2])["bbox"] == "100 240 460 270"
    # confidences are clamped to 0..100, NaN is 0
    wconf = [int(title_props(w)["x_wconf"]) for w in by_class(page, "ocrx_word")]
    assert wconf == [95, 87, 80, 80, 80, 80, 70, 99, 100, 0, 50]
    assert title_props(blocks[0])["bbox"] == "100 100 500 270"
    assert title_props(by_class(blocks[0], "ocr_par")[1])["bbox"] == "100 200 500 270"


def test_hocr_page_without_layout_is_one_block_and_paragraph():
    page = by_class(hocr_of(two_pages()), "ocr_page")[1]
    assert len(by_class(page, "ocr_carea")) == 1 and len(by_class(page, "ocr_par")) == 1
    lines = by_class(page, "ocr_line")
    assert [[w.text for w in by_class(line, "ocrx_word")] for line in lines] == [
        ["Second", "page,", "first", "line"],
        ["last", "line"],
    ]
    # words_of: the region's box shared by character count (23 characters over 600 px)
    second = by_class(lines[0], "ocrx_word")[1]
    assert title_props(second)["bbox"] == "282 100 414 140"
    assert title_props(second)["x_wconf"] == "50"


def test_hocr_text_is_the_page_text():
    root = hocr_of(two_pages())
    for page, result in zip(by_class(root, "ocr_page"), two_pages(), strict=True):
        lines = [
            " ".join(w.text for w in by_class(line, "ocrx_word"))
            for line in by_class(page, "ocr_line")
        ]
        want = page_text(result.regions).replace("\x01", "")
        assert lines == [line for line in want.split("\n") if line.strip()]
        # in the markup too, the words of a line are separated by a space
        assert ["".join(line.itertext()) for line in by_class(page, "ocr_line")] == lines


def test_hocr_is_written_page_by_page():
    events = []

    def pages():
        for page in two_pages():
            events.append(f"read {page.page}")
            yield page

    class Out(io.StringIO):
        def write(self, text):
            if 'class="ocr_page"' in text:
                events.append("wrote page")
            return super().write(text)

    write_hocr(pages(), Out(), title="t")
    assert events == ["read 0", "wrote page", "read 1", "wrote page"]


def test_hocr_of_no_pages_is_valid_xml():
    root = hocr_of([])
    assert by_class(root, "ocr_page") == []


# ---------------------------------------------------------------- ALTO


class _LocalSchemas(etree.Resolver):
    """The ALTO schema imports xlink.xsd from loc.gov: take the copy in tests/data."""

    def resolve(self, url, pubid, context):
        if url.endswith("/xlink.xsd"):
            return self.resolve_filename(str(DATA / "xlink.xsd"), context)
        return None


@pytest.fixture(scope="module")
def alto_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalSchemas())
    return etree.XMLSchema(etree.parse(str(DATA / "alto-4-2.xsd"), parser))


def alto_of(pages, source_name="scan <1>.pdf") -> etree._ElementTree:
    out = io.StringIO()
    write_alto(pages, out, source_name)
    return etree.ElementTree(etree.fromstring(out.getvalue().encode()))


def test_alto_is_valid_against_the_schema(alto_schema):
    doc = alto_of(two_pages())
    assert alto_schema.validate(doc), alto_schema.error_log
    # and the schema does check: a String without CONTENT is refused
    string = next(doc.getroot().iter(f"{A}String"))
    del string.attrib["CONTENT"]
    assert not alto_schema.validate(doc)


def test_alto_description():
    root = alto_of(two_pages()).getroot()
    assert root.tag == f"{A}alto"
    description = root.find(f"{A}Description")
    assert description.findtext(f"{A}MeasurementUnit") == "pixel"
    assert description.findtext(f"{A}sourceImageInformation/{A}fileName") == "scan <1>.pdf"
    software = description.find(f"{A}OCRProcessing/{A}ocrProcessingStep/{A}processingSoftware")
    assert software.findtext(f"{A}softwareName") == "ocrq"


def strings_of(line):
    return [s.get("CONTENT") for s in line.iter(f"{A}String")]


def test_alto_structure_and_values_with_layout_given():
    root = alto_of(two_pages()).getroot()
    pages = root.findall(f"{A}Layout/{A}Page")
    assert [(p.get("PHYSICAL_IMG_NR"), p.get("WIDTH"), p.get("HEIGHT")) for p in pages] == [
        ("1", "1240", "1754"),
        ("2", "1240", "1754"),
    ]
    space = pages[0].find(f"{A}PrintSpace")
    blocks = space.findall(f"{A}ComposedBlock")
    assert [len(b.findall(f"{A}TextBlock")) for b in blocks] == [2, 1]
    lines = list(pages[0].iter(f"{A}TextLine"))
    assert [strings_of(line) for line in lines] == [
        ["Dear", "Sir,"],
        ["thank", "you", "<&>", "all"],
        ["Total", "12", "EUR"],
        ["Right", "column"],
    ]
    first = lines[0]
    assert [first.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == [
        "100",
        "100",
        "300",
        "30",
    ]
    dear, sp, sir = list(first)
    assert dear.tag == f"{A}String" and sp.tag == f"{A}SP" and sir.tag == f"{A}String"
    assert [dear.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT", "WC")] == [
        "100",
        "100",
        "120",
        "30",
        "0.95",
    ]
    assert (sp.get("HPOS"), sp.get("WIDTH")) == ("220", "20")
    wc = [float(s.get("WC")) for s in pages[0].iter(f"{A}String")]
    assert wc == [0.95, 0.87, 0.8, 0.8, 0.8, 0.8, 0.7, 0.99, 1.0, 0.0, 0.5]
    for line in lines:  # an SP between each two strings, none at the ends
        tags = [child.tag for child in line]
        assert tags[0] == tags[-1] == f"{A}String"
        assert tags.count(f"{A}SP") == tags.count(f"{A}String") - 1
    assert blocks[0].find(f"{A}TextBlock").get("HPOS") == "100"
    assert [blocks[1].get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == [
        "900",
        "100",
        "200",
        "30",
    ]


def test_alto_page_without_layout_is_one_block_and_paragraph():
    page = alto_of(two_pages()).getroot().findall(f"{A}Layout/{A}Page")[1]
    blocks = page.findall(f"{A}PrintSpace/{A}ComposedBlock")
    assert len(blocks) == 1 and len(blocks[0].findall(f"{A}TextBlock")) == 1
    lines = list(page.iter(f"{A}TextLine"))
    assert [strings_of(line) for line in lines] == [
        ["Second", "page,", "first", "line"],
        ["last", "line"],
    ]
    assert {s.get("WC") for s in lines[1].iter(f"{A}String")} == {"0.25"}


def test_alto_ids_are_unique_and_an_empty_page_is_valid(alto_schema):
    empty = PageResult(2, 100, 100, 72, [])
    doc = alto_of([*two_pages(), empty])
    assert alto_schema.validate(doc), alto_schema.error_log
    ids = [e.get("ID") for e in doc.getroot().iter() if e.get("ID")]
    assert len(ids) == len(set(ids))
