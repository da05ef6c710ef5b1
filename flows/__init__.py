"""Prefect flows: one thin flow per pipeline stage (``python -m flows.<stage>``).

A flow module never imports another flow module: what two flows share lives in ``stages/``.
Four modules here hold no flow and may be imported by any flow: ``common`` (params loading,
task runner, CLI), ``local`` (Prefect's local settings), ``server`` (the local Prefect server)
and ``diff`` (metrics across commits). tests/test_structure.py checks both rules and derives
each DVC stage's code deps from its flow's imports.

Importing the package, before any flow imports Prefect, applies ``local.local_defaults``:
Prefect's home in .prefect/, no telemetry, a running ``make server`` as the API.
"""
from flows import local as _local

_local.apply()
