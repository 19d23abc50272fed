"""Analyses over model values: the one footprint engine (smaps' rules) and what is built on it
(whole-machine rows, sharing by PFN, page-exact diffs, working sets, the physical view)."""
