"""Events to tidy tables to figures and reports: pure pandas and matplotlib."""
