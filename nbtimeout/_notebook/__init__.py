"""What a notebook user sees: the magics, their options, the countdown and the banner."""
