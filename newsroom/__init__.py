"""newsroom: Markdown issues to responsive email, a web archive and feeds, sent to lists."""

__version__ = "0.1.0"
