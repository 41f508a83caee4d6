"""Example storyboards, shipped with the package (``hailuo init DIR`` copies them)."""
