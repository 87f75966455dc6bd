"""Polku features package."""
