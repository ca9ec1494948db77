"""The in-kernel engines: each an arm/cancel pair over a deadline."""
