"""Costs: what instances spend, against the budgets of ``budgets.yaml``. Before anything is
rented, :mod:`~vastnb.costs.guard` holds the worst a launch or a job could spend against the
budgets that apply."""
