"""The core behind ``Memory``: the engine (what every part shares), planned changes applied in
one transaction, reads, a user's rights, key rotation and resealing. ``memory.py`` is the facade."""
