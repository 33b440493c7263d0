import os

from alembic import context

from regio_common import migrations
from regio_controlpanel.db import billing  # noqa: F401  (its tables are in the same metadata)
from regio_controlpanel.db.models import SCHEMA, metadata

url = os.environ.get("REGIO_CONTROLPANEL_DATABASE_URL")
if url:
    context.config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
migrations.run(metadata, SCHEMA)
