"""The two kinds of failure the command line reports."""


class BadInput(Exception):
    """Something the user gave is wrong; the message is one line naming it and the fix."""


class LabFailure(Exception):
    """The lab itself could not be built or run (exit status 3)."""
