"""Run folders, result rows, statistics and reports."""
