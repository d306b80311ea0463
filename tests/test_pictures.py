"""``simulate -o html`` and ``plan -o html``: one self-contained page each, drawn by a real headless Chromium
whose screenshot pixels must show the lanes in their colours (the gray hop in the gray colour)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser import screenshot
from helpers import REPO, run_graylane

BASE, GRAY, ERROR = (0x1C, 0x7E, 0xD6), (0xF5, 0x9F, 0x00), (0xE0, 0x31, 0x31)
FRAME = (0xCE, 0xD4, 0xDA)
LANES = {"base": BASE, "gray": GRAY, "error": ERROR}
FULLLINK = ["simulate", "-f", "samples/fulllink", "--request", "GET http://example.com/", "-o", "html"]
README_PICTURE = REPO / "docs" / "fulllink-lane.svg"


def page(*args: str) -> str:
    result = run_graylane(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"\b(src|href)\s*=", html), "the page must not load anything"
    assert all(target.startswith("#") for target in re.findall(r"url\(([^)]*)\)", html))


def origin(image) -> tuple[int, int]:
    """The screenshot position of the first picture: the top-left pixel of its frame."""
    width, height = image.size
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            if pixels[x, y] == FRAME:
                return x, y
    raise AssertionError("no picture frame in the screenshot")


def nodes(html: str) -> list[tuple[str, str, int, int]]:
    """(node title, lane, x, y of its box) as the page's SVG places them."""
    found = re.findall(r'<g data-lane="(\w+)" data-node="([^"]+)">\s*<rect x="([\d.]+)" y="([\d.]+)"', html)
    return [(title, lane, int(float(x)), int(float(y))) for lane, title, x, y in found]


def band_colours(html: str, tmp_path: Path) -> list[tuple[str, tuple]]:
    """(node title, the colour Chromium drew in the middle of its lane band), for every service node."""
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    image = screenshot(path, 1800, 900)
    left, top = origin(image)
    return [(title, image.getpixel((left + x + 6, top + y + 37))) for title, lane, x, y in nodes(html)
            if lane != "none"]


def test_simulate_html_is_one_self_contained_deterministic_page() -> None:
    html = page(*FULLLINK, "-H", "agent: pc")
    assert_self_contained(html)
    assert html == page(*FULLLINK, "-H", "agent: pc")
    assert "<svg" in html and "Where GET http://example.com/ goes" in html
    assert "VS default/vs-mocka http[0]" in html  # the object and rule that decided on the edge


def test_the_gray_lane_is_drawn_gray(tmp_path: Path) -> None:
    html = page(*FULLLINK, "-H", "agent: pc")
    assert [(title, lane) for title, lane, _x, _y in nodes(html)] == [
        ("client", "none"), ("ingress gateway", "none"), ("mocka (subset canary)", "gray"),
        ("mockb (subset canary)", "gray")]
    assert band_colours(html, tmp_path) == [("mocka (subset canary)", GRAY), ("mockb (subset canary)", GRAY)]


def test_the_base_lane_is_drawn_in_the_base_colour(tmp_path: Path) -> None:
    html = page(*FULLLINK)
    assert band_colours(html, tmp_path) == [("mocka (subset version-base)", BASE),
                                            ("mockb (subset version-base)", BASE)]


MISCONFIGURED = ["simulate", "-f", "samples/misconfigured", "--request", "GET http://books.example.com/", "-o", "html"]


def test_a_request_no_pod_answers_is_drawn_as_an_error(tmp_path: Path) -> None:
    html = page(*MISCONFIGURED, "-H", "x-canary: 1")
    assert [title for title, colour in band_colours(html, tmp_path) if colour == ERROR] == \
        ["ratings.bookstore (subset canary)"]
    assert "503: no healthy upstream" in html


def test_gray_pods_behind_a_base_subset_are_drawn_gray(tmp_path: Path) -> None:
    """The classic mistake: the base subset also selects the gray pods, so half the base traffic is gray."""
    html = page(*MISCONFIGURED)
    assert sorted((title, lane) for title, lane, _x, _y in nodes(html) if title.startswith("reviews")) == \
        [("reviews.bookstore (subset v1)", "base"), ("reviews.bookstore (subset v1)", "gray")]
    colours = [colour for title, colour in band_colours(html, tmp_path) if title.startswith("reviews")]
    assert sorted(colours) == sorted([GRAY, BASE])


def test_plan_html_charts_every_step(tmp_path: Path) -> None:
    html = page("plan", "-f", "samples/weighted-canary", "-o", "html")
    assert_self_contained(html)
    bars = re.findall(r'<g data-rule="VirtualService/reviews http\[0\] primary" data-step="step (\d)/3" '
                      r'data-stable="([\d.]+)" data-canary="([\d.]+)">\s*<rect x="([\d.]+)" y="([\d.]+)" '
                      r'width="([\d.]+)"', html)
    assert [(step, stable, canary) for step, stable, canary, *_ in bars] == \
        [("1", "95.0", "5.0"), ("2", "50.0", "50.0"), ("3", "0.0", "100.0")]
    path = tmp_path / "plan.html"
    path.write_text(html, encoding="utf-8")
    image = screenshot(path, 1000, 600)
    left, top = origin(image)
    _step, _stable, _canary, x, y, stable_width = bars[0]
    x, y, stable_width = float(x), float(y), float(stable_width)
    middle = int(top + y + 8)
    assert image.getpixel((int(left + x + stable_width / 2), middle)) == BASE        # 95% stable
    assert image.getpixel((int(left + x + stable_width + 3), middle)) == GRAY        # then 5% canary
    x3, y3 = float(bars[2][3]), float(bars[2][4])
    assert image.getpixel((int(left + x3 + 20), int(top + y3 + 8))) == GRAY          # step 3: all canary


def test_readme_picture_is_what_graylane_draws() -> None:
    """docs/fulllink-lane.svg (shown in the README) is the picture of the full-link sample, as made today."""
    html = page(*FULLLINK, "-H", "agent: pc")
    drawn = re.search(r"<svg.*?</svg>", html, re.S)
    assert drawn
    assert README_PICTURE.read_text(encoding="utf-8") == drawn.group(0) + "\n", \
        "regenerate: graylane simulate -f samples/fulllink --request 'GET http://example.com/' -H 'agent: pc' " \
        "-o html | sed -n '/<svg/,/<\\/svg>/p' > docs/fulllink-lane.svg"
