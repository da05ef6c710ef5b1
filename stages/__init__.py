"""Stage logic as plain functions over typed records. No Prefect, no DVC here."""
