"""Measuring a refinement: sequence metrics, torchmetrics and callbacks, the baselines a user would pick."""
