"""Saving and loading: atomic writes, weights-only checkpoint loading, rebuilding a model.

``atomic.py`` writes files through a temp file and a rename (results, checkpoints), and
``checkpoint.py`` holds the Lightning checkpoint plugin, the safe loader that refuses pickled
objects, :func:`rebuild_model` from the config stored in a checkpoint and resume resolution.
"""
