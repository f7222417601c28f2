"""What every command may raise, and the exit codes."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An expected failure: its message is one sentence for the operator."""
