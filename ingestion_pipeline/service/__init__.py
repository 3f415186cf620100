"""The HTTP service for applications and reviewers: it writes to the landing zone and the
database and leaves every run to the sensors, so Dagster stays the one orchestrator."""
