"""What the registry does, as plain functions over one session, one module per thing it owns."""
