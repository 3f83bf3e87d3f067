"""The default GPU profiles and budgets, shipped inside the wheel as package data."""
