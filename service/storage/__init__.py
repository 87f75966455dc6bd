"""Polku service.storage package."""
