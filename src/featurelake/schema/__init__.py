"""Feature group schemas: types, validation, YAML loading."""
