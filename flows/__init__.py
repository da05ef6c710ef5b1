"""Prefect flows: one thin flow per pipeline stage (``python -m flows.<stage>``)."""
