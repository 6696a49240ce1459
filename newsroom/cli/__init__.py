"""The `newsroom` command: it asks, shows progress and words the errors; the rules are the library's."""
