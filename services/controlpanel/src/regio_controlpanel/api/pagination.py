"""Divio's list envelope: ``{count, next, previous, results}`` with ``page`` and ``page_size``."""
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
MAX_PAGE_SIZE = 1000
MAX_PAGE = 1_000_000  # keeps the offset inside what PostgreSQL accepts


class Page(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


class PageParams:
    def __init__(self, page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
                 page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20):
        self.page = page
        self.page_size = page_size


async def paginate(session: AsyncSession, query: Select, request: Request, params: PageParams,
                   serialize: Callable[[Sequence], list]) -> dict:
    count = (await session.execute(select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
    rows = (await session.execute(query.limit(params.page_size).offset((params.page - 1) * params.page_size))).scalars().all()

    def link(page: int) -> str:
        return str(request.url.include_query_params(page=page, page_size=params.page_size))

    return {
        "count": count,
        "next": link(params.page + 1) if params.page * params.page_size < count else None,
        "previous": link(params.page - 1) if params.page > 1 else None,
        "results": await serialize(rows),
    }
