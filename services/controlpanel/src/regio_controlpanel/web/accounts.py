"""Setting a user's web sign-in password from the command line, for an operator: members
added by email have no password until one is set (there is no invitation email yet).

    python -m regio_controlpanel.web.accounts EMAIL --password-file FILE

Reads the control panel's settings from its environment (REGIO_CONTROLPANEL_DATABASE_URL …).
A user not known yet is created, with no organisation: they can create one once signed in."""
import argparse
import asyncio
from pathlib import Path

from sqlalchemy import func, select

from regio_common.db import make_engine, make_sessionmaker

from ..db.models import User
from ..settings import Settings
from .passwords import check_new_password, hash_password


async def set_password(settings: Settings, email: str, password: str) -> bool:
    """True when the user was created now."""
    check_new_password(password)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            email = email.strip().lower()
            user = (await session.execute(select(User).where(func.lower(User.email) == email))).scalar_one_or_none()
            created = user is None
            if created:
                user = User(email=email)
                session.add(user)
            user.password_hash = hash_password(password)
    finally:
        await engine.dispose()
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("email")
    parser.add_argument("--password-file", type=Path, required=True, help="the password (first line)")
    args = parser.parse_args()
    created = asyncio.run(set_password(Settings(), args.email, args.password_file.read_text().splitlines()[0]))
    print(f"{'created ' if created else ''}{args.email}: password set")


if __name__ == "__main__":
    main()
