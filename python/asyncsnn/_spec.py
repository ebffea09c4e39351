"""The version of ``docs/semantics.md`` implemented by every engine of this package."""

SPEC_VERSION: int = 2
