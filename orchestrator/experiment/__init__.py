"""What to measure and where: the experiment file, the inventory, the plan of cells and its estimate.
Nothing here talks to a host or reads a result."""
