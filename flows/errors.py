"""The one error a flow's pure logic raises for input it should understand but
cannot; the flow's input operator turns it into a dead letter with the message."""


class InvalidEvent(ValueError):
    """An envelope this flow should understand but cannot (goes to dead letters)."""
