"""The owner's dashboard: who signs in, and the pages they see."""
