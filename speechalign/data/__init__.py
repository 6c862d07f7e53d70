"""Reading manifests, audio, statistics (and, later, samplers, features and collation)."""
