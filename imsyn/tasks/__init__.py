"""Experiment drivers: one module per system, config -> run -> outputs.

Each module has ``FIELDS``, its config fields declared once with their default, rule and
one-line meaning (:class:`imsyn.validate.Decl`; a training task's table is
:func:`imsyn.training.loop.training_fields`: the common fields with its defaults, and its
own), ``validate(config)``, its
:class:`imsyn.training.loop.Task`, ``train(config, workdir)`` and
``evaluate(config, workdir)``; ``imsyn.experiments.EXPERIMENTS`` maps ``config.task`` to
it. The algorithms themselves live in the library modules, which import nothing from here.

* :mod:`imsyn.tasks.dcgan`: DCGAN (A3), algorithm in :mod:`imsyn.gan`.
* :mod:`imsyn.tasks.cyclegan`: CycleGAN (A3), algorithm in :mod:`imsyn.gan`.
* :mod:`imsyn.tasks.nst`: neural style transfer (A4), algorithm in :mod:`imsyn.nst`.
* :mod:`imsyn.tasks.editing`: GAN photo editing (A5), algorithm in :mod:`imsyn.editing`.
* :mod:`imsyn.tasks.writeup`: the course write-up, every experiment of the five on one page;
  a package with a module per section (``a1`` ... ``a5``), the planner and the page.

A1 (:mod:`imsyn.align`) and A2 (:mod:`imsyn.poisson`) have no training run; their drivers are
the CLIs in :mod:`imsyn.cli`.
"""
