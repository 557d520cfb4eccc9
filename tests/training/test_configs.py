"""The shipped experiment configs load and give valid walk-forward folds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob(
    "*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_gives_folds(path):
    exp = load_config(path)
    folds = exp.folds()
    assert folds
    for f in folds:
        assert f.valid.start - f.train.end >= pd.Timedelta(minutes=exp.horizon)
        assert f.test.end <= pd.Timestamp(exp.end, tz="UTC")


def test_config_errors_name_the_problem(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\nlabel: fwd_ret_15\nfeatures: [a]\nmodels: {lstm: {}}\n")
    with pytest.raises(ConfigError, match="lstm"):
        load_config(p)
    p.write_text("name: x\nlabel: fwd_ret_15\nfeatures: [a]\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
