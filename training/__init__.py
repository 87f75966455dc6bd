"""Polku training package."""
