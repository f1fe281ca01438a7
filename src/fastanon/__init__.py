"""fastanon: anonymize DICOM files at the speed of copying their bytes."""

from .errors import FastanonError, MalformedError, PolicyError
from .inspect import Finding, inspect, summarize
from .masks import Mask, MaskRules, MaskWarning
from .pipeline import Report, anonymize, anonymize_file
from .policy import Action, Policy

__version__ = "0.1.0"

__all__ = ["Action", "FastanonError", "Finding", "MalformedError", "Mask", "MaskRules",
           "MaskWarning", "Policy", "PolicyError", "Report", "anonymize", "anonymize_file",
           "inspect", "summarize", "__version__"]
