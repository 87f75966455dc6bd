"""Polku service.routers package."""
