"""Shared fixtures. Servers the tests talk to are started here, on 127.0.0.1 only."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_servers import *  # noqa: F401,F403


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


#: the reference implementations: test dependencies, used as oracles (we read what they write,
#: they read what we write). Without them the core suite still runs; their checks skip, named.
ORACLES = ("tensorstore", "cloudvolume")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo
    if report.failed and exc is not None and exc.errisinstance(ImportError):
        name = getattr(exc.value, "name", None) or ""
        if name.split(".")[0] in ORACLES:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"needs the oracle {name!r} (pip install -e \".[test]\" installs it)")
