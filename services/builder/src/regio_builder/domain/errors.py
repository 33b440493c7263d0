"""Why a build failed, in words a user reads in the deployment log."""


class BuildFailed(Exception):
    """A build that cannot produce an image; ``reason`` goes to the log and to BuildFinished."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RepositoryUnavailable(BuildFailed):
    """The repository cannot be cloned, or the branch does not exist."""


class NoDockerfile(BuildFailed):
    pass


class DockerBuildFailed(BuildFailed):
    pass


class BuildTimedOut(BuildFailed):
    pass


class NotFound(Exception):
    """An object the caller asked for does not exist; answered with 404."""

    status_code = 404


class BuildNotFound(NotFound):
    pass
