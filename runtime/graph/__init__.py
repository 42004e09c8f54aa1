"""The indicator graph: compiler from the checked IR, and its batch and streaming drivers."""
