"""The parts the one FeatureStore composes: Gold store, virtual store, and the router."""
