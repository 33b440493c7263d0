"""The hand-written migration creates exactly the schema the code's models describe."""
import os
import subprocess
import sys
from pathlib import Path

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


def test_the_migrated_schema_matches_the_models(database_url):
    result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "check"],
                            env={**os.environ, "REGIO_INGRESS_DATABASE_URL": database_url},
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr
