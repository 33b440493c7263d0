"""An environment's events: what the controller did to or saw of its instances outside a
deployment (a restart, an instance replaced or moved off a lost runner, a scale carried out
or impossible), kept so the environment's owners can see why their instances changed."""
from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import messages

from ..db.models import Environment, EnvironmentEvent


async def record(session: AsyncSession, message: messages.EnvironmentEvent) -> None:
    """Stored under the message's id, so the same event never shows twice. An event of an
    environment deleted since is dropped: retrying it would hold up every later event of
    the region."""
    if await session.get(Environment, message.environment_id) is None:
        return
    await session.execute(insert(EnvironmentEvent).values(
        id=message.id, environment_id=message.environment_id, instance_id=message.instance_id,
        reason=message.reason, message=message.message, occurred_at=message.occurred_at,
    ).on_conflict_do_nothing())


def newest_first(environment: Environment) -> Select:
    return (select(EnvironmentEvent).where(EnvironmentEvent.environment_id == environment.id)
            .order_by(EnvironmentEvent.occurred_at.desc(), EnvironmentEvent.id.desc()))
