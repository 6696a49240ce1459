"""The web side (Starlette): pages, forms, one-click unsubscribe, the archive and feeds."""
