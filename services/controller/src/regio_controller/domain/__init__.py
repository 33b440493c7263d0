"""States, rules and errors of the controller: no FastAPI, no SQLAlchemy."""
