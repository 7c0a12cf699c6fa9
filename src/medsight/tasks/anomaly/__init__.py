"""The anomaly-detection family (registered as ``anomaly``): see :mod:`medsight.tasks.anomaly.family`;
and domain-specific pretraining of encoders (:func:`pretrain`, ``medsight pretrain``)."""

from medsight.tasks.anomaly.family import AnomalyFamily
from medsight.tasks.anomaly.pretraining import pretrain

__all__ = ["AnomalyFamily", "pretrain"]
