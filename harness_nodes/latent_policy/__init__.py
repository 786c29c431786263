"""Latent-action policy: models, training, the pure policy core and the `latent_policy` node."""
