"""Outgoing email: tokens for its links, composing, transports, the outbox worker and jobs."""
