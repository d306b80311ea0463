"""A real headless Chromium (Debian's ``chromium``) that takes screenshots of the pages graylane writes.

Tests that need it fail when it is missing and GRAYLANE_REQUIRE_E2E=1 (CI, where .ci/run installs it);
elsewhere they skip with the reason.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from helpers import installed_program

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]


def screenshot(page: Path, width: int, height: int):
    """The page as Chromium draws it, a PIL image of ``width`` x ``height`` pixels."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        png = Path(profile) / "shot.png"
        completed = subprocess.run(
            [installed_program("chromium", "chromium-browser", package="chromium"), *FLAGS, f"--user-data-dir={profile}/data", f"--window-size={width},{height}",
             f"--screenshot={png}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
        assert png.exists(), f"chromium wrote no screenshot (exit {completed.returncode}): {completed.stderr[-2000:]}"
        with Image.open(png) as image:
            return image.convert("RGB")
