"""Fixtures of the training tests: small simulated frames, a 2-CPU Ray session."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.training.frames import sim_frame
from training.config import config_from_dict

SEGMENTS = {
    "train": ["2024-01-08", "2024-01-09T12:00"],
    "valid": ["2024-01-09T13:00", "2024-01-10"],
    "test": ["2024-01-10T01:00", "2024-01-11"],
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", module="pytorch_forecasting")


@pytest.fixture(scope="session")
def planted_frame():
    """Three simulated pairs whose ``signal`` feature carries the future return."""
    return sim_frame(planted=True)


@pytest.fixture(scope="session")
def noise_frame():
    """The same bars with a ``signal`` of pure noise."""
    return sim_frame(planted=False)


def experiment(models=None, ensemble=(), epochs=2, **kw):
    """A tiny experiment on the simulated frames."""
    return config_from_dict(
        {
            "name": "sim",
            "label": "fwd_ret_15",
            "features": ["bqx_45", "ret_std_45", "signal"],
            "segments": SEGMENTS,
            "models": models or {"tft": {}},
            "ensemble": list(ensemble),
            "trainer": {"max_epochs": epochs, "batch_size": 64, "seed": 7},
            **kw,
        }
    )


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance with 2 CPUs for the whole session."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
