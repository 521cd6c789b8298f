"""Events to tidy tables to figures and reports: pure pandas and matplotlib, no side effects on machines."""
