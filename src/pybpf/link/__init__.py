"""Links: one attachment of a program to a hook, one file per attach kind."""
