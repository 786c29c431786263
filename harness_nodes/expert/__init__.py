"""Scripted pick-and-place expert: drives the controller router over topics, records demonstrations."""
