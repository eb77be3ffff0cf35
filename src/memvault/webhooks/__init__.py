"""Webhooks: the destination allow-list, signatures and the pinned HTTP POST.

The outbox, the worker and the per-namespace configuration are in ``memvault.core.webhooks``;
what a receiver needs (``verify``) and what an operator's allow-list means are here.
"""

from memvault.webhooks.destination import (
    AllowList,
    Destination,
    Target,
    check_addresses,
    check_destination,
    parse_url,
)
from memvault.webhooks.signing import SIGNATURE_HEADER, new_secret, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "AllowList",
    "Destination",
    "Target",
    "check_addresses",
    "check_destination",
    "new_secret",
    "parse_url",
    "sign",
    "verify",
]
