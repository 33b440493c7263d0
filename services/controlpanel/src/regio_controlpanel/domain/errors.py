"""Errors that carry their HTTP status; turned into Divio-style bodies in one place (api/errors.py)."""


class ApiError(Exception):
    status_code = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict:
        return {self.field or "non_field_errors": [self.message]}


class NotFound(ApiError):
    status_code = 404

    def __init__(self, what: str = "Not found."):
        super().__init__(what)

    def body(self) -> dict:
        return {"detail": self.message}


class Conflict(ApiError):
    status_code = 409


class NotAuthenticated(ApiError):
    status_code = 401

    def body(self) -> dict:
        return {"detail": self.message}


class PermissionDenied(ApiError):
    status_code = 403

    def body(self) -> dict:
        return {"detail": self.message}
