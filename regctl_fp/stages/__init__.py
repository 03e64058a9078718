"""Stages: each a function of explicit inputs (images, recipe fragments, commits) returning Images."""
