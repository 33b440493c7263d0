"""What every Regio service shares, and no business rule."""
