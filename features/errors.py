"""Domain errors of the feature layer: one root, messages that name the field or code and the remedy."""

from __future__ import annotations


class PolkuError(Exception):
    """Root of Polku's domain errors."""


class UnknownCode(PolkuError):
    """A code (ESCO, ISCO-08, municipality, language, ...) is not in the shipped taxonomy."""

    def __init__(self, kind: str, code: str) -> None:
        self.kind = kind
        self.code = code
        super().__init__(f"unknown {kind} code {code!r}: not in the shipped taxonomy")


class LanguageLevelError(PolkuError):
    """A language level or YKI grade is not on the Finnish scale."""


class FeatureInputError(PolkuError, TypeError):
    """The feature pipeline was given something other than the records it accepts."""
