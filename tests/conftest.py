"""pytest fixtures shared by the offline tests; the helpers themselves live in helpers.py."""
from __future__ import annotations

import pytest

from helpers import run_graylane


@pytest.fixture
def graylane():
    return run_graylane
