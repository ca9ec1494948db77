"""The fork engine: a forked child runs the work, streams its output, sends back its changes."""
