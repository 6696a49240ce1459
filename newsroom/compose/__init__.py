"""An issue file → its variants: front matter, blocks, Markdown, email/text/web rendering, merge
fields, .ics, preflight. Pure: values in, bytes out, no database."""
