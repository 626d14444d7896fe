"""Training internals: dataset + augmentation (dataset.py), checkpoints (checkpoint.py), process group
(distributed.py). The step function is faceparse.train.train."""
