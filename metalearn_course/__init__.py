"""metalearn_course: the companion library of the open meta-learning course."""

__version__ = "0.1.0"
