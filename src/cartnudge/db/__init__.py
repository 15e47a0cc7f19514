"""Storage: SQLAlchemy models, engine and the unit of work."""
