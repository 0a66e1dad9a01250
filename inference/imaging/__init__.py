"""Reading, validating, preparing and registering MRI visits (and the atlas they are
fitted to)."""
