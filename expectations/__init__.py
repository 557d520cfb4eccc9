"""Data-quality gate: Great Expectations suites in code, run on the warehouse.

``validate(settings, "raw"|"features")`` runs the suites, ``require_pass`` blocks on
a critical failure, ``build_data_docs`` renders the HTML reports.
"""

from expectations.gate import (
    GateError,
    GateReport,
    Outcome,
    QualityGateError,
    build_data_docs,
    require_pass,
    validate,
)
from expectations.rules import GateConfig, Rule

__all__ = [
    "GateConfig",
    "GateError",
    "GateReport",
    "Outcome",
    "QualityGateError",
    "Rule",
    "build_data_docs",
    "require_pass",
    "validate",
]
