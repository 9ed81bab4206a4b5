"""Errors that carry a message meant for a person: the CLI prints them without a traceback."""


class EdgeInspectorError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(EdgeInspectorError):
    """The configuration is invalid. The message names the key path and what is wrong."""

    exit_code = 2


class StartupError(EdgeInspectorError):
    """A device, model or file needed at start-up is missing or broken. Names what and why."""

    exit_code = 3


class ImageError(ValueError):
    """An image could not be decoded (empty, truncated, not an image)."""


class JudgeError(RuntimeError):
    """The judge failed on one part. The policy applies the judge-error fail-safe."""


class JudgeTimeout(JudgeError):
    """The judge stopped because the part's deadline would pass. The policy applies the timeout
    fail-safe."""


class RegistrationFailed(ValueError):
    """The frame could not be registered to the reference with confidence (the part moved beyond the
    budget, another product, a blank or foreign image). The policy makes it a NO-READ
    ``registration_failed``; ``figures`` says what the registration measured."""

    def __init__(self, message: str, figures: dict | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}
