"""One module per command; each has `add_parser(commands, where)`, which registers it and its handler."""
