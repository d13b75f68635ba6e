"""What every vector anybind gives out must be: finite and of unit length, to one tolerance.

The model checks its outputs against it, the index writer checks each row before a commit, and
the index verifier checks each stored shard: one number, so a vector one accepts the others accept.
"""
from __future__ import annotations

UNIT_TOLERANCE = 1e-3  # |‖z‖ - 1| allowed for an embedding to count as a unit vector
