"""Thin Faust agents: decode -> logic -> table -> downstream topic."""

from __future__ import annotations

__all__: list[str] = []
