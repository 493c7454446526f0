"""lattice package."""
