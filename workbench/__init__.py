"""Gradient Workbench: config-driven runner, run records and plots for training-dynamics research."""
