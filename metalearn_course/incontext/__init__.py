"""In-context learning: a transformer learns a task from examples in its input, not its weights.

One module per idea, each citing its paper: the transformer itself, attention written out with
a boolean mask (transformer.py: causal_mask, SelfAttention, Block, Transformer); Garg et al.'s
linear-regression prompts and the model that reads them (regression.py: LinearTasks, Prompts,
tokens, InContextRegressor); the algorithms it is compared with (baselines.py: least_squares,
ridge, averaging, gradient_step, nearest_neighbours, pool_posterior, squared_errors,
squared_error_by_points); and Omniglot few-shot classification as a prompt (fewshot.py:
episode_mask, InContextClassifier). Both models train with metalearn_course.train.fit; the
classifier is evaluated with evaluate.few_shot.
"""

from metalearn_course.incontext.baselines import (
    averaging,
    gradient_step,
    least_squares,
    nearest_neighbours,
    pool_posterior,
    ridge,
    squared_error_by_points,
    squared_errors,
)
from metalearn_course.incontext.fewshot import InContextClassifier, episode_mask
from metalearn_course.incontext.regression import (
    InContextRegressor,
    LinearTasks,
    Prompts,
    check_prompt,
    tokens,
)
from metalearn_course.incontext.transformer import (
    Block,
    SelfAttention,
    Transformer,
    causal_mask,
    check_tokens,
)

__all__ = [
    "Block",
    "InContextClassifier",
    "InContextRegressor",
    "LinearTasks",
    "Prompts",
    "SelfAttention",
    "Transformer",
    "averaging",
    "causal_mask",
    "check_prompt",
    "check_tokens",
    "episode_mask",
    "gradient_step",
    "least_squares",
    "nearest_neighbours",
    "pool_posterior",
    "ridge",
    "squared_error_by_points",
    "squared_errors",
    "tokens",
]
