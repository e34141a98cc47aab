"""Transports: HTTP on the node's one port, and an in-memory network for simulation."""
