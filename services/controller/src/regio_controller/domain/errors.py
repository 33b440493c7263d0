class RolloutFailed(Exception):
    """A rollout step failed for a reason the deployment log shows to the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RolloutEnded(Exception):
    """The rollout was ended from outside while it ran (its environment was retired, or it was
    cancelled): stop, change nothing."""
