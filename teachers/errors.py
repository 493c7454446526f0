"""The teachers' errors, in a leaf module every teacher module imports (none imports another for them)."""

from __future__ import annotations


class TeacherSourceError(RuntimeError):
    """A teacher's model cannot be found or loaded; the message names the teacher and the model."""


class TeacherSpecError(ValueError):
    """A teacher spec that cannot work with its model (found before anything loads).
    ``field``: the spec's key at fault (``model``, ``pooling``, ``layer``, ``trust_remote_code``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message
