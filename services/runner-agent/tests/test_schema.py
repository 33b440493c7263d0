"""The hand-written migration and the models describe the same schema."""
import os
import subprocess
import sys

from .conftest import ALEMBIC_INI


def test_migration_matches_the_models(migrated_database):
    url = migrated_database(ALEMBIC_INI, "REGIO_RUNNER_")

    check = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "check"],
                           env={**os.environ, "REGIO_RUNNER_DATABASE_URL": url}, capture_output=True, text=True)

    assert check.returncode == 0, check.stdout + check.stderr
