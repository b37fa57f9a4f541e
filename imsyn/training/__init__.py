"""Training: the generic loop (:mod:`.loop`), checkpoints, writers and sweeps.

See :mod:`imsyn.training.loop` for the Task protocol every experiment implements; the
experiments themselves (DCGAN, CycleGAN, ...) are in :mod:`imsyn.tasks`.
"""
