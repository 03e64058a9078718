"""The engine: the desired state of every name a recipe owns, and a run that makes a layout hold it.

``kinds`` is the one table of stage kinds; ``converge`` evaluates their nodes in order through one
reuse-or-make path (``reuse``) and moves every changed name in one index replacement.
"""
