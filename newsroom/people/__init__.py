"""Subscribers and lists, imports and exports, the consent ledger, confirmation, preferences,
erasure and suppression."""
