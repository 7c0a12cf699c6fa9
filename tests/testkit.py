"""Settings shared by tests that train tiny runs (tests/ is on sys.path through tests/conftest.py)."""

CLASSIFY_QUICK = [
    "train.max_iterations=60",
    "train.iterations_per_epoch=20",
    "train.progress=false",
    "train.lr=0.003",
    "plan.batch_size=16",
    "plan.network_kwargs={small_input: true, widen_factor: 0.25}",
]

SEGMENT_QUICK = [
    "train.max_iterations=4",
    "train.iterations_per_epoch=2",
    "train.progress=false",
    "plan.batch_size=2",
    "data.num_folds=2",
]
