"""Environment variables: plain ones stored as they are, sensitive ones encrypted at rest
and never sent back."""
import json
import re
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, Environment, EnvironmentVariable
from ..domain.errors import ApiError, Conflict, NotFound
from .access import Action, Caller
from .crypto import Vault

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# All of an environment's variables together, as they travel: a release carries them (sealed,
# with the injected ones) in one message, which the bus limits to 1 MiB.
MAX_ENVIRONMENT_BYTES = 256 * 1024


def environment_bytes(variables: dict[str, str]) -> int:
    """The size of an environment's variables as sealing.seal encodes them: JSON with every
    character outside ASCII escaped (an "é" is six bytes there, two in UTF-8), so what the API
    lets in can always be released."""
    return len(json.dumps(variables).encode())


async def get_variable(session: AsyncSession, caller: Caller, variable_id: UUID,
                       action: Action) -> tuple[EnvironmentVariable, Environment, Application]:
    row = (await session.execute(
        select(EnvironmentVariable, Environment, Application)
        .join(Environment, Environment.id == EnvironmentVariable.environment_id)
        .join(Application, Application.id == Environment.application_id)
        .where(EnvironmentVariable.id == variable_id))).first()
    if row is None:
        raise NotFound()
    caller.require_environment(row[1], row[2], action)
    return row[0], row[1], row[2]


async def create_variable(session: AsyncSession, vault: Vault, environment_id: UUID, *, name: str, value: str,
                          is_sensitive: bool) -> EnvironmentVariable:
    if not VARIABLE_NAME.match(name):
        raise ApiError("Use letters, digits and underscores, not starting with a digit.", "name")
    existing = (await session.execute(select(EnvironmentVariable.id).where(
        EnvironmentVariable.environment_id == environment_id, EnvironmentVariable.name == name))).first()
    if existing is not None:
        raise Conflict(f"Variable {name} already exists in this environment; update it instead.", "name")
    await _check_size(session, vault, environment_id, name, value)
    variable = EnvironmentVariable(environment_id=environment_id, name=name)
    store_value(vault, variable, value, is_sensitive)
    session.add(variable)
    await session.flush()
    return variable


def store_value(vault: Vault, variable: EnvironmentVariable, value: str, is_sensitive: bool) -> None:
    variable.is_sensitive = is_sensitive
    variable.value = None if is_sensitive else value
    variable.value_encrypted = vault.encrypt(value) if is_sensitive else None


async def update_variable(session: AsyncSession, vault: Vault, variable: EnvironmentVariable, value: str | None,
                          is_sensitive: bool | None) -> None:
    """A sensitive variable stays sensitive: making it plain would send its secret back."""
    if variable.is_sensitive and is_sensitive is False:
        raise ApiError("A sensitive variable cannot be made plain; delete it and create it again.", "is_sensitive")
    sensitive = variable.is_sensitive if is_sensitive is None else is_sensitive
    if value is None:
        if sensitive == variable.is_sensitive:
            return
        value = variable.value or ""  # plain → sensitive: encrypt the value it has
    else:
        await _check_size(session, vault, variable.environment_id, variable.name, value)
    store_value(vault, variable, value, sensitive)


async def _check_size(session: AsyncSession, vault: Vault, environment_id: UUID, name: str, value: str) -> None:
    """Refuses a value that would make the environment's variables bigger than a release carries."""
    variables = await variables_of(session, vault, environment_id)
    variables[name] = value
    size = environment_bytes(variables)
    if size > MAX_ENVIRONMENT_BYTES:
        raise ApiError(f"With this value the environment's variables would be {size} bytes; they may be "
                       f"{MAX_ENVIRONMENT_BYTES} bytes in all (names and values, as JSON). Make it or others smaller.",
                       "value")


async def variables_of(session: AsyncSession, vault: Vault, environment_id: UUID) -> dict[str, str]:
    rows = (await session.execute(select(EnvironmentVariable).where(
        EnvironmentVariable.environment_id == environment_id))).scalars()
    return {v.name: vault.decrypt(v.value_encrypted) if v.is_sensitive else (v.value or "") for v in rows}


async def sensitive_names(session: AsyncSession, environment_id: UUID) -> set[str]:
    return set((await session.execute(select(EnvironmentVariable.name).where(
        EnvironmentVariable.environment_id == environment_id, EnvironmentVariable.is_sensitive))).scalars())
