"""Tidings' domain: notes, versions, rendering, targeting and read tracking.

Nothing in this package imports Flask; the web layer in ``app`` calls into it.
"""
