"""Generation engines behind one small interface (:class:`inference.engines.base.Engine`)."""

from inference.engines.base import Engine, EngineError, make_engine

__all__ = ["Engine", "EngineError", "make_engine"]
