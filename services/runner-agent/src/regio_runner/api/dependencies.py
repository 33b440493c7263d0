"""What routes take from the running service."""
from typing import Annotated

from fastapi import Depends, Request

from ..agent import Agent


def get_agent(request: Request) -> Agent:
    return request.app.state.agent


AgentDep = Annotated[Agent, Depends(get_agent)]
