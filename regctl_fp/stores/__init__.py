"""Stores: where images live. One protocol (``base.Store``), interchangeable backends."""
