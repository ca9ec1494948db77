"""nbtimeout.map: many tasks, each with its own limit, on forked workers or an executor."""
