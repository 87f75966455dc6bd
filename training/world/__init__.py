"""Polku training.world package."""
