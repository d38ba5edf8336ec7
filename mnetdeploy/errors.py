"""User-facing errors: one clear line, a defined exit code, no traceback (unless --debug)."""

# Exit codes shared by every command (documented in README.md).
EXIT_OK = 0
EXIT_FAILED = 1       # the job ran and its verdict is "no" (a broken budget, a failed check)
EXIT_USAGE = 2        # bad input: config, flags, files; nothing was written
EXIT_INCONCLUSIVE = 3 # the job ran but the data cannot decide (a latency comparison noisier than its threshold)


class UserError(Exception):
    """An error the user can fix; its message is printed as one line."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """Invalid configuration file or option values."""


class CheckFailed(UserError):
    """A verification the tool runs on its own output failed (e.g. an export disagrees with Keras)."""

    exit_code = EXIT_FAILED
