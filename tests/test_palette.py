"""The status palette under simulated colour-vision deficiency, and its text contrast."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from colorspacious import cspace_convert
from matplotlib.colors import to_rgb

from pydags.status import LOOKS, PALETTE, StageStatus

SHOWN_TOGETHER = [name for name in LOOKS if name != "fresh"]  # fresh is cached's look


def perceived(colour: str, deficiency: str | None) -> np.ndarray:
    rgb = np.array(to_rgb(colour))
    if deficiency is not None:
        space = {"name": "sRGB1+CVD", "cvd_type": deficiency, "severity": 100}
        rgb = np.clip(cspace_convert(rgb, space, "sRGB1"), 0, 1)
    return cspace_convert(rgb, "sRGB1", "CAM02-UCS")


@pytest.mark.parametrize("deficiency", [None, "protanomaly", "deuteranomaly", "tritanomaly"])
def test_every_two_statuses_differ_in_colour_under_each_deficiency(deficiency):
    seen = {name: perceived(LOOKS[name].fill, deficiency) for name in SHOWN_TOGETHER}
    for a, b in itertools.combinations(SHOWN_TOGETHER, 2):
        assert np.linalg.norm(seen[a] - seen[b]) >= 12, (a, b)


def luminance(colour: str) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
              for c in to_rgb(colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    low, high = sorted([luminance(a), luminance(b)])
    return (high + 0.05) / (low + 0.05)


def test_labels_read_on_every_fill_and_each_status_has_its_own_glyph():
    for name, look in LOOKS.items():
        assert contrast(look.text, look.fill) >= 4.5, name
    glyphs = [PALETTE[s].glyph for s in StageStatus]
    assert all(glyphs) and len(set(glyphs)) == len(glyphs)


def test_failed_is_the_strongest_and_skipped_is_muted():
    chroma = {s: np.hypot(*perceived(PALETTE[s].fill, None)[1:]) for s in StageStatus}
    assert max(chroma, key=chroma.get) is StageStatus.FAILED
    assert chroma[StageStatus.SKIPPED] < min(chroma[s] for s in (
        StageStatus.RUNNING, StageStatus.DONE, StageStatus.FAILED, StageStatus.RETRYING))
