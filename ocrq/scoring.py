"""Accuracy scoring shared by tests, bench and reports (conventions of ../shared/eval/README.md).

CER = Levenshtein distance / reference length, after collapsing whitespace runs to one
space and stripping the ends.
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")
_HYPHEN_EOL = re.compile(r"(\w)-\s*\n\s*(\w)")


def normalize(text: str, *, casefold: bool = False) -> str:
    text = _WS.sub(" ", text).strip()
    return text.casefold() if casefold else text


def dehyphenate(text: str) -> str:
    """Join end-of-line hyphenation ("exam-\\nple" -> "example")."""
    return _HYPHEN_EOL.sub(r"\1\2", text)


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer_counts(hypothesis: str, reference: str, *, casefold: bool = False) -> tuple[int, int]:
    """(edit distance, reference length) after normalization; sum these over a set."""
    hyp = normalize(hypothesis, casefold=casefold)
    ref = normalize(reference, casefold=casefold)
    return levenshtein(hyp, ref), len(ref)


def cer(hypothesis: str, reference: str, *, casefold: bool = False) -> float:
    dist, n = cer_counts(hypothesis, reference, casefold=casefold)
    return dist / max(n, 1)
