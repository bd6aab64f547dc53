"""Shared fixtures. Servers the tests talk to are started here, on 127.0.0.1 only."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_servers import *  # noqa: F401,F403


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
