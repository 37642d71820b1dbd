"""Datasets of the course: each loader downloads (or finds) its data, checks it and caches it;
the samplers turn a dataset into tasks (few-shot episodes, sinusoid regression problems)."""

from .download import data_dir
from .episodes import Episode, EpisodeBatch, EpisodeSampler, stack_episodes
from .omniglot import OmniglotNotAvailable, OmniglotSplit, OmniglotVerificationError, load_omniglot
from .sinusoid import SinusoidBatch, SinusoidTasks, sinusoid

__all__ = [
    "Episode",
    "EpisodeBatch",
    "EpisodeSampler",
    "OmniglotNotAvailable",
    "OmniglotSplit",
    "OmniglotVerificationError",
    "SinusoidBatch",
    "SinusoidTasks",
    "data_dir",
    "load_omniglot",
    "sinusoid",
    "stack_episodes",
]
