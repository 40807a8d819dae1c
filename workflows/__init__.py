"""Workflows over the three stages that are not a stage themselves: demo (all stages on generated data) and status."""
