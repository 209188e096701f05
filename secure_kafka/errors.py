"""The one exception the CLI turns into a one-line error and exit status 1."""


class SecureKafkaError(Exception):
    """A failure the user can act on. The message is one line: what failed and the fix."""
