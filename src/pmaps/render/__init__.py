"""Renderers: build rows (a view-model) from model/analysis values, then write them."""
