"""Forking from a kernel and killing what was forked, shared by fork mode and map."""
