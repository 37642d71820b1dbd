"""Metric-based meta-learners: classify a query by comparing it with the labelled support set.

One module per method, each citing its paper: ProtoNet (protonet.py), MatchingNet
(matching.py), RelationNet (relation.py) and SiameseNet (siamese.py). Every one maps an
Episode to logits (or, for RelationNet, relation scores) [N*Q, N] and trains with the shared
loop metalearn_course.train.fit.
"""

from metalearn_course.metric.matching import MatchingNet
from metalearn_course.metric.protonet import ProtoNet
from metalearn_course.metric.relation import RelationNet
from metalearn_course.metric.siamese import SiameseNet

__all__ = ["MatchingNet", "ProtoNet", "RelationNet", "SiameseNet"]
