"""Training: the generic loop (:mod:`.loop`), checkpoints, writers, tasks (DCGAN in :mod:`.gan`).

See :mod:`imsyn.training.loop` for the Task protocol every experiment implements.
"""
