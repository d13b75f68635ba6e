"""Training bindings (and the anchor itself) and measuring them.

``recipe`` (TOML recipes → dataclasses), ``data`` (manifests, inputs, cached anchor targets),
``loss`` (InfoNCE with an optional queue), ``trainer`` (the resumable loop), ``state`` (optimizer
and loss state without pickles), ``anchor_train`` (a small CLIP-format anchor), ``evaluate``
(zero-shot and retrieval metrics).
"""
