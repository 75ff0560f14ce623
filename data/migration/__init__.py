"""The migration engine: the runner behind init_db() and ``alembic upgrade``, and its helpers."""
