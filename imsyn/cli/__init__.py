"""Command-line tasks of ``python -m imsyn``; one module per task family."""
