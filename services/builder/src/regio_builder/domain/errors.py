"""Why a build failed, in words a user reads in the deployment log."""


class BuildFailed(Exception):
    """A build that cannot produce an image; ``reason`` goes to the log and to BuildFinished."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RepositoryUnavailable(BuildFailed):
    """The repository cannot be cloned, or the branch does not exist."""


class InvalidCommit(BuildFailed):
    """The commit asked for is not a full commit id."""


class CommitNotOnBranch(BuildFailed):
    """The commit asked for is neither the branch's head nor one of its ancestors."""


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
