"""Calibrated synthetic competence-centre world: clients, catalogue, latent truth and counsellor history."""

from training.world.calibrate import calibration_report
from training.world.generate import World, generate_world
from training.world.truth import Truth

__all__ = ["Truth", "World", "calibration_report", "generate_world"]
