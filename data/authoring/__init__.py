"""Tools for the app's developers: recording revisions, the schema diagram. Never run by the app."""
