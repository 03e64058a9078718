"""Recipes: the YAML language (model, loader), the plan of stages with cache keys, and the cache."""
