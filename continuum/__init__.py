"""Continuum's core: settings, the declarative topic list, the local Kafka broker and the CLI.

Import direction: ``continuum`` (settings, topics) <- ``schemas`` <- ``producers`` <-
``streams`` / ``inference`` / ``jobs``. Only :mod:`continuum.cli` reaches upwards, lazily, to
dispatch subcommands.
"""

from __future__ import annotations

from continuum.settings import Settings
from continuum.topics import TOPICS, TopicSpec, topic_spec

__all__ = ["Settings", "TOPICS", "TopicSpec", "topic_spec"]
__version__ = "0.1.0"
