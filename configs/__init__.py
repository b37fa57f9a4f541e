"""The experiment configs (one ``ml_collections`` file per experiment, presets inside).

In a clone they are ``configs/*.py``; an installed imsyn carries them as the package
``imsyn.configs``, so ``--config=cyclegan`` (or ``configs/cyclegan.py``) names the shipped
file from any folder (:func:`imsyn.experiments.resolve_config_arg`).
"""
