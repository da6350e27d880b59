import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real EM data folder (../shared/data or $EMPANADA_NB_DATA); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found; set EMPANADA_NB_DATA")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(0)
