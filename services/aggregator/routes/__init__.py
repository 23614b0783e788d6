"""HTTP routes: the Spanish seed paths, the versioned English API and health."""
