"""Pieces every node shares: robot descriptions, config lookup, validated parameters."""
