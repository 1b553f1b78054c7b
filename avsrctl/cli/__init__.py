"""Thin command-line layer: each module parses options and calls one library function."""
