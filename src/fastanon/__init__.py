"""fastanon: anonymize DICOM files at the speed of copying their bytes."""

from .errors import FastanonError, MalformedError, PolicyError
from .masks import Mask
from .pipeline import Report, anonymize, anonymize_file
from .policy import Action, Policy

__version__ = "0.1.0"

__all__ = ["Action", "FastanonError", "MalformedError", "Mask", "Policy", "PolicyError", "Report",
           "anonymize", "anonymize_file", "__version__"]
