"""autodistill: multi-objective search for small, fast students by knowledge distillation."""

__version__ = "0.1.0"
