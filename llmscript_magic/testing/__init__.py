"""Test helpers: a scripted provider for tests and demos (never an installed plugin)."""

from .fake import FakeProvider

__all__ = ["FakeProvider"]
