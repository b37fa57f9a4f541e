"""Experiment drivers: one module per system, config -> run -> outputs.

Each module has ``SCHEMA`` (its config fields beside
:data:`imsyn.training.loop.COMMON_SCHEMA`), ``validate(config)``, its
:class:`imsyn.training.loop.Task`, ``train(config, workdir)`` and
``evaluate(config, workdir)``; ``imsyn.experiments.EXPERIMENTS`` maps ``config.task`` to
it. The algorithms themselves live in the library modules, which import nothing from here.

* :mod:`imsyn.tasks.dcgan`: DCGAN (A3), algorithm in :mod:`imsyn.gan`.
* :mod:`imsyn.tasks.cyclegan`: CycleGAN (A3), algorithm in :mod:`imsyn.gan`.
"""
