"""Memory-based ("black-box") meta-learners: the learning happens in a network's activations.

One module per idea, each citing its paper: the recurrent learner over (image, previous label)
sequences and its data (black_box.py: SequenceSampler, BlackBoxLSTM, accuracy by instance), the
memory-augmented neural network with LRUA writes (mann.py: MANN), and the hypernetwork that
generates a task's classifier from its support set (hypernet.py: HyperNet). The sequence models
map a SequenceBatch to logits [B, T, N]; HyperNet maps an Episode to logits [N*Q, N]. All of
them train with metalearn_course.train.fit.
"""

from metalearn_course.memory.black_box import (
    BlackBoxLSTM,
    SequenceBatch,
    SequenceSampler,
    accuracy_by_instance,
    instance_accuracy,
    instance_numbers,
    make_sequences,
    previous_label_inputs,
)
from metalearn_course.memory.hypernet import HyperNet, WeightGenerator
from metalearn_course.memory.mann import MANN, MANNTrace

__all__ = [
    "MANN",
    "BlackBoxLSTM",
    "HyperNet",
    "MANNTrace",
    "SequenceBatch",
    "SequenceSampler",
    "WeightGenerator",
    "accuracy_by_instance",
    "instance_accuracy",
    "instance_numbers",
    "make_sequences",
    "previous_label_inputs",
]
