"""Suite-wide settings: no network, offline hubs, deterministic and single-threaded torch."""

import os

os.environ["DIARIZEN_LAB_BLOCK_NETWORK"] = "1"  # inherited by every CLI subprocess the tests start
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import diarizen_lab  # noqa: E402,F401  (installs the network guard in this process)
from diarizen_lab.utils import netguard  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _network_guard_is_on():
    assert netguard.is_installed(), "the network guard must be active for the whole test suite"
    yield
