"""Errors: every refusal of bad input is a FastanonError (a ValueError)."""


class FastanonError(ValueError):
    """Input fastanon cannot read or a request it cannot honour.

    The message says where: the file, the tag and the byte offset when known.
    """


class MalformedError(FastanonError):
    """The byte stream is not a DICOM data set fastanon can walk safely."""


class PolicyError(FastanonError):
    """A policy, preset, override or mask that cannot be applied."""


class UnknownTagError(PolicyError, KeyError):
    """A name that is neither a DICOM tag nor a keyword of the data dictionary."""

    __str__ = Exception.__str__     # the message as written, not KeyError's repr of it


class MaskWarning(UserWarning):
    """A mask was applied, but not exactly as given (clipped, widened, or black guessed)."""
