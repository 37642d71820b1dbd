import sys
from pathlib import Path

import pytest
import torch

# tests/ helpers (notebooks.py) importable from every test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: for tiny networks a second thread only adds
    synchronisation (and competes with other work on a shared machine). Use it per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
