"""Prefect flows: one thin flow per pipeline stage (``python -m flows.<stage>``).

A flow module never imports another flow module: what two flows share lives in ``stages/``.
Three modules here hold no flow and may be imported by any flow: ``common`` (params loading,
task runner, CLI), ``server`` (the local Prefect server) and ``diff`` (metrics across commits,
standard library only). tests/test_structure.py checks both rules and derives each DVC stage's
code deps from its flow's imports.
"""
