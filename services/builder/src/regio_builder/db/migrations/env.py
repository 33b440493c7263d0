import os

from alembic import context

from regio_builder.db.models import SCHEMA, metadata
from regio_common import migrations

url = os.environ.get("REGIO_BUILDER_DATABASE_URL")
if url:
    context.config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
migrations.run(metadata, SCHEMA)
