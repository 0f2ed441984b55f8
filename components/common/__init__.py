"""Plain helpers shared by every component: signatures, graph files, examples, errors."""
