"""Pure functions over Pages and Snapshots: footprints, sharing, diffs, working sets."""
